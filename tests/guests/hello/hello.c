/*
 * hello.c - the unikd test guest.
 *
 * A freestanding 32-bit x86 program booted by QEMU through the PVH entry
 * point (see start.S).  It prints a fixed banner on the COM1 16550 UART,
 * then runs the small instruction language given on its kernel command
 * line.  See README.md for the language, exit codes and machine support.
 *
 * Build flags (hello.mk): -m32 -ffreestanding -mgeneral-regs-only, no libc,
 * no libgcc, so this file must not use 64-bit division or floating point.
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

/* Entry points called from start.S. */
void hello_main(u32 start_info_paddr);
struct trap_frame;
void hello_trap(struct trap_frame *f);
/* Implemented in start.S. */
extern const u8 isr_stubs[];
void triple_fault(void) __attribute__((noreturn));

/* ------------------------------------------------------------------------ */
/* Exit codes of the guest (written to isa-debug-exit). */

#define EXIT_OK          0   /* instructions ran out */
#define EXIT_USAGE       2   /* unknown instruction / bad argument / no cmdline */
#define EXIT_EXCEPTION   3   /* unexpected CPU exception */
#define EXIT_FAILED      4   /* poweroff had no effect, sleep without a PIT */

/* ------------------------------------------------------------------------ */
/* Port and MMIO access. */

static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(u16 port, u16 v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(u16 port, u32 v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u32 inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void mmio_write8(u32 addr, u8 v)
{
	*(volatile u8 *)addr = v;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" : : : "memory");
}

static void __attribute__((noreturn)) halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" : : : "memory");
}

/* ------------------------------------------------------------------------ */
/* COM1 16550 UART. */

#define COM1            0x3f8
#define UART_THR        0       /* transmit holding register (write) */
#define UART_IER        1
#define UART_DLL        0       /* with LCR.DLAB */
#define UART_DLM        1       /* with LCR.DLAB */
#define UART_FCR        2       /* FIFO control (write) */
#define UART_IIR        2       /* interrupt identification (read) */
#define UART_LCR        3
#define UART_MCR        4
#define UART_LSR        5
#define UART_RBR        0       /* receive buffer register (read) */
#define UART_LSR_DR     0x01    /* data ready: RBR holds a byte */
#define UART_IER_RDI    0x01    /* interrupt on received data */
#define UART_LSR_THRE   0x20    /* THR empty: may write one byte */
#define UART_LSR_TEMT   0x40    /* transmitter completely idle */

static u32 tx_burst = 1;        /* bytes we may write per THRE: 1 or 16 */
static u8 tx_buf[16];
static u32 tx_len;

static void uart_init(void)
{
	outb(COM1 + UART_IER, 0x00);    /* no interrupts, we poll */
	outb(COM1 + UART_LCR, 0x80);    /* DLAB on */
	outb(COM1 + UART_DLL, 0x01);    /* 115200 baud */
	outb(COM1 + UART_DLM, 0x00);
	outb(COM1 + UART_LCR, 0x03);    /* 8N1, DLAB off */
	outb(COM1 + UART_FCR, 0x07);    /* enable + clear both FIFOs */
	outb(COM1 + UART_MCR, 0x03);    /* DTR | RTS */
	/* IIR bits 7:6 = 11: a 16550A whose 16-byte FIFO is now enabled. */
	if ((inb(COM1 + UART_IIR) & 0xc0) == 0xc0)
		tx_burst = sizeof(tx_buf);
}

/*
 * Write the buffered bytes.  Before every burst wait for THRE.  With the
 * FIFO enabled THRE means "transmit FIFO empty", so up to 16 bytes fit
 * without loss; without a FIFO the burst is a single byte.  When the host
 * side of the serial port cannot take more data, QEMU keeps THRE clear
 * and the guest stalls here (back-pressure) instead of losing bytes.  A
 * missing UART reads as 0xff, so this never hangs.
 *
 * Every port access is a VM exit under KVM (KVM emulates "rep outsb" one
 * byte per exit), so polling LSR once per burst instead of once per byte
 * nearly halves the exits: about 1.1 per byte instead of 2.
 */
static void tx_drain(void)
{
	u32 off = 0;

	while (off < tx_len) {
		u32 n = tx_len - off;
		const u8 *p = tx_buf + off;

		if (n > tx_burst)
			n = tx_burst;
		while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
			cpu_relax();
		off += n;
		__asm__ volatile("rep outsb"
				 : "+S"(p), "+c"(n)
				 : "d"((u16)(COM1 + UART_THR))
				 : "memory");
	}
	tx_len = 0;
}

static void put_byte(u8 c)
{
	tx_buf[tx_len++] = c;
	if (tx_len == sizeof(tx_buf))
		tx_drain();
}

/* Push out everything, and wait until the transmitter is idle. */
static void uart_flush(void)
{
	tx_drain();
	while (!(inb(COM1 + UART_LSR) & UART_LSR_TEMT))
		cpu_relax();
}

static void put_bytes(const char *s, u32 len)
{
	for (u32 i = 0; i < len; i++)
		put_byte((u8)s[i]);
}

static void put_str(const char *s)
{
	while (*s)
		put_byte((u8)*s++);
}

/* Line end; also sends the line, so every line is visible right away. */
static void put_eol(void)
{
	put_byte('\r');
	put_byte('\n');
	tx_drain();
}

static void put_line(const char *s)
{
	put_str(s);
	put_eol();
}

static void put_dec(u32 v)
{
	char buf[10];
	int n = 0;

	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		put_byte((u8)buf[--n]);
}

static void put_hex(u32 v)
{
	static const char digits[] = "0123456789abcdef";

	put_str("0x");
	for (int shift = 28; shift >= 0; shift -= 4)
		put_byte((u8)digits[(v >> shift) & 0xf]);
}

/* ------------------------------------------------------------------------ */
/* QEMU devices: isa-debug-exit and pvpanic. */

#define DEBUG_EXIT_PORT 0x501   /* -device isa-debug-exit default iobase */
#define PVPANIC_PORT    0x505   /* -device pvpanic default ioport */
#define PVPANIC_PANICKED 0x01

static void __attribute__((noreturn)) guest_exit(u32 code)
{
	uart_flush();
	/* QEMU exits with status (code << 1) | 1. */
	outb(DEBUG_EXIT_PORT, (u8)code);
	put_line("hello: isa-debug-exit device missing, halting");
	uart_flush();
	halt_forever();
}

/* ------------------------------------------------------------------------ */
/*
 * Interrupts: IDT with stubs for vectors 0..63: CPU exceptions (0..31),
 * the remapped 8259 PICs (0x20..0x2f) and the local APIC spurious vector.
 */

struct trap_frame {
	u32 edi, esi, ebp, esp, ebx, edx, ecx, eax;     /* pushal */
	u32 vector, error;                              /* our stub */
	u32 eip, cs, eflags;                            /* CPU */
};

struct idt_entry {
	u16 offset_lo;
	u16 selector;
	u8 zero;
	u8 type_attr;
	u16 offset_hi;
} __attribute__((packed));

struct table_desc {
	u16 limit;
	u32 base;
} __attribute__((packed));

#define NR_VECTORS      64
#define KERNEL_CS       0x08
#define IRQ_BASE        0x20    /* PIC master -> 0x20..0x27, slave 0x28..0x2f */
#define APIC_SPURIOUS   0x3f

static struct idt_entry idt[NR_VECTORS] __attribute__((aligned(8)));
static volatile u32 timer_fired;

static void idt_init(void)
{
	struct table_desc desc;

	for (u32 v = 0; v < NR_VECTORS; v++) {
		u32 addr = (u32)isr_stubs + 16 * v;

		idt[v].offset_lo = (u16)addr;
		idt[v].selector = KERNEL_CS;
		idt[v].zero = 0;
		idt[v].type_attr = 0x8e;        /* present, DPL0, 32-bit intr gate */
		idt[v].offset_hi = (u16)(addr >> 16);
	}
	desc.limit = sizeof(idt) - 1;
	desc.base = (u32)idt;
	__asm__ volatile("lidt %0" : : "m"(desc));
}

#define PIC1_CMD        0x20
#define PIC1_DATA       0x21
#define PIC2_CMD        0xa0
#define PIC2_DATA       0xa1
#define PIC_EOI         0x20

void hello_trap(struct trap_frame *f)
{
	u32 v = f->vector;

	if (v < IRQ_BASE) {
		if (tx_len)
			put_eol();      /* end a partial line */
		put_str("hello: CPU exception ");
		put_dec(v);
		put_str(" error ");
		put_hex(f->error);
		put_str(" at eip ");
		put_hex(f->eip);
		put_eol();
		guest_exit(EXIT_EXCEPTION);
	}

	if (v >= IRQ_BASE + 16)
		return;                         /* APIC spurious: no EOI */

	u32 irq = v - IRQ_BASE;

	if (irq == 7 || irq == 15) {
		/* Possibly spurious: only EOI if the in-service bit is set. */
		u16 cmd = irq == 7 ? PIC1_CMD : PIC2_CMD;

		outb(cmd, 0x0b);                /* OCW3: read ISR */
		if (!(inb(cmd) & 0x80)) {
			if (irq == 15)
				outb(PIC1_CMD, PIC_EOI);    /* cascade was real */
			return;
		}
	}
	if (irq == 0)
		timer_fired = 1;
	if (irq >= 8)
		outb(PIC2_CMD, PIC_EOI);
	outb(PIC1_CMD, PIC_EOI);
}

/* ------------------------------------------------------------------------ */
/* Sleeping: i8254 PIT channel 0 one-shot (mode 0) -> 8259 PIC IRQ0 -> hlt. */

#define PIT_CH0         0x40
#define PIT_CMD         0x43
#define PIT_HZ          1193182u
#define PIT_CHUNK_MS    50u     /* 50 ms = 59659 ticks < 65536 */

static int pit_state;           /* 0 = unknown, 1 = usable, -1 = absent */
static int pic_state;           /* 0 = unknown, 1 = usable, -1 = absent */

static void pic_init(void)
{
	outb(PIC1_CMD, 0x11);           /* ICW1: edge, cascade, ICW4 */
	outb(PIC2_CMD, 0x11);
	outb(PIC1_DATA, IRQ_BASE);      /* ICW2: vector base */
	outb(PIC2_DATA, IRQ_BASE + 8);
	outb(PIC1_DATA, 0x04);          /* ICW3: slave on IRQ2 */
	outb(PIC2_DATA, 0x02);
	outb(PIC1_DATA, 0x01);          /* ICW4: 8086 mode */
	outb(PIC2_DATA, 0x01);
	outb(PIC2_DATA, 0xff);          /* mask everything */
	outb(PIC1_DATA, 0xff);
}

static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			 : "a"(leaf), "c"(0));
}

static inline u32 rdmsr_lo(u32 msr)
{
	u32 lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return lo;
}

#define MSR_APIC_BASE   0x1b
#define APIC_BASE_EN    (1u << 11)
#define APIC_BASE_X2    (1u << 10)
#define APIC_TPR        0x080
#define APIC_SVR        0x0f0
#define APIC_LVT0       0x350

/*
 * Let 8259 interrupts through the local APIC: LINT0 in ExtINT mode, which
 * firmware normally sets up but qboot and QEMU's reset state (microvm) do
 * not: there LVT0 is masked and PIC interrupts never reach the CPU.  The
 * APIC must be software-enabled first, or KVM keeps LVT0 masked.
 */
static void apic_route_pic(void)
{
	u32 a, b, c, d, msr, base;

	cpuid(1, &a, &b, &c, &d);
	if (!(d & (1u << 9)))
		return;                 /* no local APIC: PIC drives INTR */
	msr = rdmsr_lo(MSR_APIC_BASE);
	if (!(msr & APIC_BASE_EN) || (msr & APIC_BASE_X2))
		return;                 /* disabled (PIC passes) / x2APIC: leave */
	base = msr & 0xfffff000u;
	*(volatile u32 *)(base + APIC_SVR) = 0x100 | APIC_SPURIOUS;
	*(volatile u32 *)(base + APIC_TPR) = 0;
	*(volatile u32 *)(base + APIC_LVT0) = 0x700;    /* ExtINT, unmasked */
}

/* Set up the 8259 (once); 1 if its interrupts reach the CPU, all masked. */
static int pic_ready(void)
{
	if (pic_state == 0) {
		apic_route_pic();
		pic_init();
		outb(PIC1_DATA, 0xfe);
		pic_state = inb(PIC1_DATA) == 0xfe ? 1 : -1;
		outb(PIC1_DATA, 0xff);
	}
	return pic_state > 0;
}

static void pit_oneshot(u32 ticks)
{
	outb(PIT_CMD, 0x30);            /* ch0, lobyte/hibyte, mode 0, binary */
	outb(PIT_CH0, (u8)ticks);
	outb(PIT_CH0, (u8)(ticks >> 8));
}

static u8 pit_status(void)
{
	outb(PIT_CMD, 0xe2);            /* read-back: status only, ch0 */
	return inb(PIT_CH0);
}

/*
 * Sleep for ms milliseconds.  With a PIC the CPU halts between timer
 * interrupts (~0 host CPU); without one it polls the PIT output (busy).
 * Returns -1 if there is no PIT.
 */
static int sleep_ms(u32 ms)
{
	if (ms == 0)
		return 0;

	if (pit_state == 0) {
		pit_oneshot(0xffff);
		/* Status: access mode lobyte/hibyte (11), mode 0, binary. */
		pit_state = (pit_status() & 0x3f) == 0x30 ? 1 : -1;
	}
	if (pit_state < 0)
		return -1;

	if (pic_ready())
		outb(PIC1_DATA, 0xfe);  /* unmask IRQ0 only */

	while (ms) {
		u32 chunk = ms > PIT_CHUNK_MS ? PIT_CHUNK_MS : ms;
		u32 ticks = chunk * PIT_HZ / 1000u;

		if (ticks == 0)
			ticks = 1;
		__asm__ volatile("cli" : : : "memory");
		timer_fired = 0;
		pit_oneshot(ticks);
		if (pic_state > 0) {
			/* sti; hlt is atomic w.r.t. interrupts (STI shadow). */
			while (!timer_fired)
				__asm__ volatile("sti; hlt; cli" : : : "memory");
		} else {
			/* Wait for OUT (status bit 7) to go high. */
			while (!(pit_status() & 0x80))
				cpu_relax();
		}
		ms -= chunk;
	}

	if (pic_state > 0)
		outb(PIC1_DATA, 0xff);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Serial input: COM1's receiver, one byte at a time. */

#define IRQ_COM1        4
#define INPUT_LINE_MAX  256

/*
 * Wait for a byte on COM1.  With a PIC the CPU halts until the receive
 * interrupt (IRQ4) and uses about 0 host CPU; without one it polls LSR.
 */
static u8 get_byte(void)
{
	int irq = pic_ready();

	if (irq) {
		outb(COM1 + UART_IER, UART_IER_RDI);
		outb(PIC1_DATA, (u8)~(1u << IRQ_COM1));
	}
	while (!(inb(COM1 + UART_LSR) & UART_LSR_DR)) {
		if (irq)
			__asm__ volatile("sti; hlt; cli" : : : "memory");
		else
			cpu_relax();
	}
	if (irq) {
		outb(PIC1_DATA, 0xff);
		outb(COM1 + UART_IER, 0x00);
	}
	return inb(COM1 + UART_RBR);
}

static int rx_cr;               /* the last line ended with '\r' */

/*
 * Read one line into buf: up to '\r' or '\n' (not stored; the '\n' of a
 * "\r\n" is skipped), or until buf is full.  Returns 1 when a line end
 * came, 0 when buf filled first.
 */
static int get_line(char *buf, u32 max, u32 *len)
{
	*len = 0;
	while (*len < max) {
		u8 c = get_byte();

		if (c == '\n' && rx_cr) {
			rx_cr = 0;
			continue;
		}
		rx_cr = c == '\r';
		if (c == '\r' || c == '\n')
			return 1;
		buf[(*len)++] = (char)c;
	}
	return 0;
}

static void __attribute__((noreturn)) do_echo(void)
{
	char line[INPUT_LINE_MAX];
	u32 len;

	uart_flush();
	for (;;) {
		(void)get_line(line, sizeof(line), &len);
		put_str("echo: ");
		put_bytes(line, len);
		put_eol();
	}
}

/* Wait for one line of input and forget it. */
static void do_input(void)
{
	char line[INPUT_LINE_MAX];
	u32 len;

	uart_flush();
	while (!get_line(line, sizeof(line), &len))
		;
}

/* ------------------------------------------------------------------------ */
/* ACPI poweroff. */

#define PCI_ADDR        0xcf8
#define PCI_DATA        0xcfc
#define BDF(b, d, f)    (((b) << 8) | ((d) << 3) | (f))

static void pci_select(u32 bdf, u32 reg)
{
	outl(PCI_ADDR, 0x80000000u | (bdf << 8) | (reg & 0xfc));
}

static u32 pci_read32(u32 bdf, u32 reg)
{
	pci_select(bdf, reg);
	return inl(PCI_DATA);
}

static u8 pci_read8(u32 bdf, u32 reg)
{
	pci_select(bdf, reg);
	return inb((u16)(PCI_DATA + (reg & 3)));
}

static void pci_write32(u32 bdf, u32 reg, u32 v)
{
	pci_select(bdf, reg);
	outl(PCI_DATA, v);
}

static void pci_write8(u32 bdf, u32 reg, u8 v)
{
	pci_select(bdf, reg);
	outb((u16)(PCI_DATA + (reg & 3)), v);
}

#define ID_I440FX       0x12378086u     /* pc: host bridge 00:00.0 */
#define ID_PIIX4_PM     0x71138086u     /* pc: PIIX4 PM at 00:01.3 */
#define ID_Q35          0x29c08086u     /* q35: host bridge 00:00.0 */
#define ID_ICH9_LPC     0x29188086u     /* q35: ICH9 LPC at 00:1f.0 */
#define PM_DEFAULT_BASE 0x600           /* what SeaBIOS uses */
#define PM1_CNT         0x04            /* PM1a control, offset in PM I/O */
#define PM1_CNT_S5      0x2000          /* SLP_EN, SLP_TYP 0 = QEMU's \_S5 */
#define GED_SLEEP_CTL   0xfea00200u     /* microvm ACPI GED sleep control */
#define GED_S5          ((5u << 2) | (1u << 5))  /* SLP_TYP 5, SLP_EN */

/* Request an ACPI S5 soft-off; returns if the machine is unknown. */
static void acpi_poweroff(void)
{
	u32 host = pci_read32(BDF(0, 0, 0), 0x00);
	u32 base;

	if (host == ID_I440FX) {
		u32 pm = BDF(0, 1, 3);

		if (pci_read32(pm, 0x00) != ID_PIIX4_PM)
			return;
		/* PMBA at 0x40, PMREGMISC.PMIOSE (0x80 bit 0) enables it. */
		base = pci_read32(pm, 0x40) & 0xffc0;
		if (base == 0 || !(pci_read8(pm, 0x80) & 1)) {
			base = PM_DEFAULT_BASE;
			pci_write32(pm, 0x40, base | 1);
			pci_write8(pm, 0x80, (u8)(pci_read8(pm, 0x80) | 1));
		}
		outw((u16)(base + PM1_CNT), PM1_CNT_S5);
	} else if (host == ID_Q35) {
		u32 lpc = BDF(0, 31, 0);

		if (pci_read32(lpc, 0x00) != ID_ICH9_LPC)
			return;
		/* PMBASE at 0x40, ACPI_CNTL.ACPI_EN (0x44 bit 7) enables it. */
		base = pci_read32(lpc, 0x40) & 0xff80;
		if (base == 0 || !(pci_read8(lpc, 0x44) & 0x80)) {
			base = PM_DEFAULT_BASE;
			pci_write32(lpc, 0x40, base | 1);
			pci_write8(lpc, 0x44, (u8)(pci_read8(lpc, 0x44) | 0x80));
		}
		outw((u16)(base + PM1_CNT), PM1_CNT_S5);
	} else {
		/*
		 * No i440FX/Q35 host bridge: assume microvm (hardware-reduced
		 * ACPI).  Its Generic Event Device has a sleep control register.
		 */
		mmio_write8(GED_SLEEP_CTL, (u8)GED_S5);
	}
}

/* ------------------------------------------------------------------------ */
/* Command line and instruction language. */

#define PVH_START_MAGIC 0x336ec578u

enum op {
	OP_NONE,        /* key=value word: not an instruction */
	OP_PRINT,
	OP_ENV,
	OP_LINES,
	OP_LONG,
	OP_EXIT,
	OP_IDLE,
	OP_SPIN,
	OP_PANIC,
	OP_TRIPLE,
	OP_POWEROFF,
	OP_SLEEP,
	OP_ECHO,
	OP_INPUT,
	OP_TICK,
	OP_UNKNOWN,     /* name not in the table */
	OP_BADARG,      /* known name, bad or missing argument */
};

struct insn {
	const char *name;
	enum op op;
	int has_arg;    /* 1: "name:ARG" required, 0: bare "name" */
};

static const struct insn insns[] = {
	{ "print",    OP_PRINT,    1 },
	{ "env",      OP_ENV,      0 },
	{ "lines",    OP_LINES,    1 },
	{ "long",     OP_LONG,     1 },
	{ "exit",     OP_EXIT,     1 },
	{ "idle",     OP_IDLE,     0 },
	{ "spin",     OP_SPIN,     0 },
	{ "panic",    OP_PANIC,    0 },
	{ "triple",   OP_TRIPLE,   0 },
	{ "poweroff", OP_POWEROFF, 0 },
	{ "sleep",    OP_SLEEP,    1 },
	{ "echo",     OP_ECHO,     0 },
	{ "input",    OP_INPUT,    0 },
	{ "tick",     OP_TICK,     1 },
};

struct word {
	const char *s;
	u32 len;
};

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Advance *p to the next word; returns 0 at the end of the command line. */
static int next_word(const char **p, struct word *w)
{
	const char *s = *p;

	while (*s && is_space(*s))
		s++;
	if (!*s)
		return 0;
	w->s = s;
	while (*s && !is_space(*s))
		s++;
	w->len = (u32)(s - w->s);
	*p = s;
	return 1;
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode %XX escapes of s[0..len) and print the bytes if emit is set.
 * Returns -1 (printing nothing) if an escape is malformed.
 */
static int print_escaped(const char *s, u32 len, int emit)
{
	for (u32 i = 0; i < len; i++) {
		if (s[i] != '%')
			continue;
		if (i + 2 >= len || hex_val(s[i + 1]) < 0 || hex_val(s[i + 2]) < 0)
			return -1;
		i += 2;
	}
	if (!emit)
		return 0;
	for (u32 i = 0; i < len; i++) {
		if (s[i] == '%') {
			put_byte((u8)(hex_val(s[i + 1]) << 4 | hex_val(s[i + 2])));
			i += 2;
		} else {
			put_byte((u8)s[i]);
		}
	}
	return 0;
}

/* Parse a decimal u32 (no sign, no spaces); -1 on error or overflow. */
static int parse_u32(const char *s, u32 len, u32 *out)
{
	u32 v = 0;

	if (len == 0)
		return -1;
	for (u32 i = 0; i < len; i++) {
		u32 d;

		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (u32)(s[i] - '0');
		if (v > 429496729u || (v == 429496729u && d > 5))
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int name_eq(const char *s, u32 len, const char *name)
{
	u32 i;

	for (i = 0; i < len; i++)
		if (!name[i] || name[i] != s[i])
			return 0;
	return name[i] == 0;
}

/*
 * Classify one word.  A word whose first '=' comes before any ':' is a
 * key=value word (OP_NONE).  Otherwise the part before the first ':' is the
 * instruction name and the rest (after ':') its argument.
 */
static enum op parse_word(const struct word *w, const char **arg, u32 *arglen,
			  u32 *num)
{
	u32 colon = w->len;
	const struct insn *in = 0;

	for (u32 i = 0; i < w->len; i++) {
		if (w->s[i] == '=')
			return OP_NONE;
		if (w->s[i] == ':') {
			colon = i;
			break;
		}
	}
	for (u32 i = 0; i < sizeof(insns) / sizeof(insns[0]); i++) {
		if (name_eq(w->s, colon, insns[i].name)) {
			in = &insns[i];
			break;
		}
	}
	if (!in)
		return OP_UNKNOWN;

	int has_colon = colon < w->len;

	if (!in->has_arg)
		return has_colon ? OP_BADARG : in->op;
	if (!has_colon)
		return OP_BADARG;

	*arg = w->s + colon + 1;
	*arglen = w->len - colon - 1;
	*num = 0;
	switch (in->op) {
	case OP_PRINT:
		if (print_escaped(*arg, *arglen, 0) < 0)
			return OP_BADARG;
		break;
	case OP_EXIT:
		if (parse_u32(*arg, *arglen, num) < 0 || *num > 255)
			return OP_BADARG;
		break;
	default:
		if (parse_u32(*arg, *arglen, num) < 0)
			return OP_BADARG;
		break;
	}
	return in->op;
}

static void do_env(const char *cmdline)
{
	const char *p = cmdline;
	struct word w;
	const char *arg;
	u32 arglen, num;

	while (next_word(&p, &w)) {
		if (parse_word(&w, &arg, &arglen, &num) == OP_NONE) {
			put_bytes(w.s, w.len);
			put_eol();
		}
	}
}

static void do_lines(u32 n)
{
	for (u32 i = 1; i <= n && i != 0; i++) {
		put_str("line ");
		put_dec(i);
		put_eol();
	}
}

static void do_long(u32 n)
{
	for (u32 i = 0; i < n; i++)
		put_byte('x');
	put_eol();
}

static void __attribute__((noreturn)) do_tick(u32 ms)
{
	for (u32 i = 1;; i++) {
		put_str("tick ");
		put_dec(i);
		put_eol();
		if (sleep_ms(ms) < 0) {
			put_line("hello: sleep: no i8254 PIT");
			guest_exit(EXIT_FAILED);
		}
	}
}

static void __attribute__((noreturn)) do_panic(void)
{
	uart_flush();
	/* A present pvpanic device reads back its feature bits (not 0xff). */
	if (inb(PVPANIC_PORT) == 0xff)
		put_line("hello: pvpanic device missing, halting");
	outb(PVPANIC_PORT, PVPANIC_PANICKED);
	uart_flush();
	halt_forever();
}

static void __attribute__((noreturn)) do_poweroff(void)
{
	uart_flush();
	acpi_poweroff();
	/* Give QEMU time to act on the request before declaring failure. */
	if (sleep_ms(1000) < 0)
		for (u32 i = 0; i < 100000; i++)
			(void)inb(COM1 + UART_LSR);
	put_line("hello: poweroff did not take effect");
	guest_exit(EXIT_FAILED);
}

static const char *get_cmdline(u32 start_info)
{
	const volatile u32 *si = (const volatile u32 *)start_info;

	if (start_info == 0 || si[0] != PVH_START_MAGIC) {
		put_line("hello: no PVH start info (bad magic)");
		guest_exit(EXIT_USAGE);
	}
	/* cmdline_paddr: uint64 at offset 24. */
	if (si[7] != 0) {
		put_line("hello: command line above 4 GiB");
		guest_exit(EXIT_USAGE);
	}
	if (si[6] == 0)
		return "";
	return (const char *)si[6];
}

void hello_main(u32 start_info_paddr)
{
	const char *cmdline, *p, *arg;
	struct word w;
	u32 arglen, num;
	enum op op;

	uart_init();
	put_line("hello: unikd test guest");

	idt_init();
	cmdline = get_cmdline(start_info_paddr);

	/* Validate the whole program before running any of it. */
	p = cmdline;
	while (next_word(&p, &w)) {
		op = parse_word(&w, &arg, &arglen, &num);
		if (op == OP_UNKNOWN || op == OP_BADARG) {
			put_str(op == OP_UNKNOWN ? "hello: unknown instruction: "
						 : "hello: bad argument: ");
			put_bytes(w.s, w.len);
			put_eol();
			guest_exit(EXIT_USAGE);
		}
	}

	p = cmdline;
	while (next_word(&p, &w)) {
		op = parse_word(&w, &arg, &arglen, &num);
		switch (op) {
		case OP_PRINT:
			print_escaped(arg, arglen, 1);
			put_eol();
			break;
		case OP_ENV:
			do_env(cmdline);
			break;
		case OP_LINES:
			do_lines(num);
			break;
		case OP_LONG:
			do_long(num);
			break;
		case OP_EXIT:
			guest_exit(num);
		case OP_IDLE:
			uart_flush();
			halt_forever();
		case OP_SPIN:
			uart_flush();
			for (;;)
				__asm__ volatile("" : : : "memory");
		case OP_PANIC:
			do_panic();
		case OP_TRIPLE:
			uart_flush();
			triple_fault();
		case OP_POWEROFF:
			do_poweroff();
		case OP_SLEEP:
			if (sleep_ms(num) < 0) {
				put_line("hello: sleep: no i8254 PIT");
				guest_exit(EXIT_FAILED);
			}
			break;
		case OP_ECHO:
			do_echo();
		case OP_INPUT:
			do_input();
			break;
		case OP_TICK:
			do_tick(num);
		case OP_NONE:
		case OP_UNKNOWN:
		case OP_BADARG:
			break;
		}
	}
	guest_exit(EXIT_OK);
}
