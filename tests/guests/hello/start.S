/*
 * start.S - PVH entry point of the unikd test guest.
 *
 * The hypervisor/firmware enters pvh_start in 32-bit protected mode with
 * paging off, flat CS/DS/ES/SS, interrupts disabled and %ebx holding the
 * physical address of struct hvm_start_info.  The GDTR/IDTR contents are
 * not specified, so we install our own GDT before touching any segment
 * register, clear .bss, switch to our own stack and call hello_main().
 */

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10

/*
 * PVH ELF note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18), descriptor =
 * 32-bit physical entry address.  QEMU only boots an uncompressed ELF kernel
 * via PVH if it finds this note in a PT_NOTE segment (see hello.ld; the
 * segment must stay 4-byte aligned because QEMU aligns the name field to
 * the segment's p_align).
 */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 4			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start

	.section .text.pvh, "ax", @progbits
	.code32
	.globl pvh_start
	.type pvh_start, @function
pvh_start:
	cli
	cld
	lgdt	gdt_desc		/* DS is flat on entry, per PVH ABI */
	ljmp	$KERNEL_CS, $1f
1:	movl	$KERNEL_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs

	/* Zero .bss (keeps %ebx = start info). */
	movl	$__bss_start, %edi
	movl	$__bss_end, %ecx
	subl	%edi, %ecx
	xorl	%eax, %eax
	rep stosb

	movl	$stack_top, %esp
	xorl	%ebp, %ebp
	pushl	%ebx			/* hello_main(start_info_paddr) */
	call	hello_main
2:	cli
	hlt
	jmp	2b
	.size pvh_start, . - pvh_start

/*
 * Exception / IRQ stubs for vectors 0..63, 16 bytes apart so C can compute
 * the address of stub N as isr_stubs + 16 * N.  Every stub pushes the same
 * frame: (fake) error code, vector number, then jumps to isr_common.
 */
	.text
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 64
	.balign 16
	.if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	/* the CPU already pushed an error code */
	.else
	pushl	$0
	.endif
	pushl	$vec
	jmp	isr_common
	.set vec, vec + 1
	.endr

isr_common:
	pushal
	cld
	pushl	%esp			/* struct trap_frame * */
	call	hello_trap
	addl	$4, %esp
	popal
	addl	$8, %esp		/* vector + error code */
	/*
	 * Return WITHOUT iret: under the nested "kvm-pvm" hypervisor a
	 * 32-bit protected-mode iret is emulated by KVM, which cannot do it
	 * ("KVM internal error. Suberror: 1").  This is safe here because
	 * interrupts are only ever enabled by the "sti; hlt" in sleep_ms(),
	 * whose next instruction is cli: resuming after the hlt with IF
	 * still clear (as the interrupt gate left it) and without restoring
	 * the arithmetic flags changes nothing.  Exceptions never return.
	 */
	ret	$8			/* pop EIP, drop CS and EFLAGS */

/* triple_fault(): load an empty IDT and raise an exception. */
	.globl triple_fault
	.type triple_fault, @function
triple_fault:
	cli
	lidt	empty_idt_desc
	ud2				/* #UD -> #GP -> #DF -> triple fault */
3:	hlt
	jmp	3b
	.size triple_fault, . - triple_fault

	.section .rodata
	.balign 8
gdt:
	.quad	0x0000000000000000	/* null */
	.quad	0x00cf9b000000ffff	/* 0x08: code, 32-bit, base 0, 4 GiB */
	.quad	0x00cf93000000ffff	/* 0x10: data, 32-bit, base 0, 4 GiB */
gdt_end:

	.balign 4
	.word	0
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt

	.balign 4
	.word	0
empty_idt_desc:
	.word	0
	.long	0

	.section .bss
	.balign 16
stack_bottom:
	.skip	16384
stack_top:

	.section .note.GNU-stack, "", @progbits
