/* unikd's settings: built-in defaults, then the INI config file, then flags.
 *
 * One table (config.c) names each setting's section, key, flag, type and range, so the
 * file and the command line share their validation and their messages. */
#ifndef UK_CONFIG_H
#define UK_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "../common/error.h"
#include "../common/log.h"

#define CONFIG_DEFAULT_PATH "/etc/unikd/unikd.conf"
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/unikd"
#define CONFIG_DEFAULT_RUN_DIR "/run/unikd"
#define CONFIG_DEFAULT_QEMU "/usr/bin/qemu-system-x86_64"
#define CONFIG_DEFAULT_DNSMASQ "/usr/sbin/dnsmasq"
#define CONFIG_DEFAULT_CNI_CONF_DIR "/etc/cni/net.d"
/* Debian installs its plugins in /usr/lib/cni; the reference place is /opt/cni/bin. */
#define CONFIG_DEFAULT_CNI_BIN_DIRS "/opt/cni/bin:/usr/lib/cni"
#define CONFIG_DEFAULT_CNI_TIMEOUT_S 60 /* containerd's default for a CNI call is none; kubelet's
					  * RunPodSandbox deadline is 4 minutes */

struct unikd_config {
	/* [daemon] */
	char *socket; /* NULL: RUN_DIR/unikd.sock, set by config_finish */
	unsigned socket_mode;
	char *state_dir, *run_dir;
	unsigned workers;       /* threads for lifecycle calls (create, start, stop, remove) */
	unsigned read_workers;  /* threads for Version, Status, List*, *Status, *Stats */
	unsigned image_workers; /* threads for PullImage, RemoveImage */
	unsigned max_connections;
	unsigned idle_timeout_s; /* a CRI connection without calls is closed after it */
	enum uk_log_level log_level;
	/* [vm] */
	char *vmwrapper; /* NULL: next to unikd */
	char *qemu;      /* NULL: vmwrapper's default, CONFIG_DEFAULT_QEMU */
	unsigned memory_mib, vcpus, overhead_mib;
	char *accel;       /* auto, kvm, tcg */
	char *cgroup_root; /* NULL: /sys/fs/cgroup */
	/* [network] */
	char *network; /* bridge, cni, none */
	char *bridge, *pod_cidr, *dnsmasq;
	char *cni_conf_dir, *cni_bin_dirs; /* cni: the config directory; plugin dirs, ':'-separated */
	unsigned cni_timeout_s;            /* cni: one plugin run */
	/* [registries] */
	char **insecure; /* HOST or HOST:PORT, NULL-terminated; never NULL once initialised */
	/* [delegate] (issue 16) */
	char *delegate_endpoint;  /* NULL: the delegate is off; else unix:///PATH or /PATH */
	char **delegate_handlers; /* unikd's runtime handlers, NULL-terminated; default "unikd" */
	char *delegate_default;   /* the side of a pod without a handler: delegate or unikd */
	/* [stream] (issue 17): the streaming server's listener */
	char *stream_address; /* an IP literal; default 127.0.0.1 */
	unsigned stream_port; /* 0: any free port */
	unsigned stream_url_timeout_s; /* an Attach or PortForward URL is valid this long */
	unsigned stream_idle_timeout_s; /* a session with no traffic this long is closed */
	/* [pool] (issue 18): VMs started ahead of need, claimed by StartContainer */
	unsigned pool_size;           /* ready VMs per key; 0: the pool is off (the default) */
	unsigned pool_total;          /* pool VMs of all keys together */
	unsigned pool_memory_mib;     /* their memory together (guest + overhead each) */
	unsigned pool_idle_timeout_s; /* a key no pod wanted this long loses its VMs; 0: never */
	unsigned pool_starting;       /* pool VMs starting at once */
};

/* A flag as given on the command line: its long name without "--", and its value. */
struct config_flag {
	const char *name;
	const char *value;
};

/* The built-in defaults. -ENOMEM. */
int config_init(struct unikd_config *c);
/* Frees what c holds; c may be NULL or zeroed. */
void config_done(struct unikd_config *c);

/* Read an INI file over c. A missing file is an error only when must_exist; returns 1
 * when a file was read, 0 when it was missing. Errors name the file and the line. */
int config_load(struct unikd_config *c, const char *path, bool must_exist, uk_error *err);
/* The same for a file already open; name is what messages call it. */
int config_load_stream(struct unikd_config *c, FILE *f, const char *name, uk_error *err);
/* The same for text in memory (tests). */
int config_load_string(struct unikd_config *c, const char *text, const char *name, uk_error *err);

/* Whether name (without "--") is a flag that sets a config key. */
bool config_is_flag(const char *name);
/* Apply flags in order, over the file. A list flag given at all replaces the file's list. */
int config_apply_flags(struct unikd_config *c, const struct config_flag *flags, size_t n, uk_error *err);

/* After file and flags: paths made absolute against the working directory, the socket's
 * default filled in. */
int config_finish(struct unikd_config *c, uk_error *err);

/* The delegate's socket path ([delegate] endpoint without its unix:// scheme), or NULL when
 * the delegate is off. */
const char *config_delegate_socket(const struct unikd_config *c);

/* The keys whose values differ between a and b, as "section.key" joined by spaces: those a
 * reload applies to *live, those that need a restart to *restart. Empty strings when none. */
int config_diff(const struct unikd_config *a, const struct unikd_config *b, char **live, char **restart);

/* Every key as section.key=value, space-separated, for a debug line; NULL on ENOMEM. */
char *config_describe(const struct unikd_config *c);

#endif
