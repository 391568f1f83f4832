/* Sandbox and container records: what unikd knows about each pod and VM, saved as one
 * JSON file per object, written atomically on every change. */
#ifndef UK_RECORDS_H
#define UK_RECORDS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "../common/error.h"

#define UK_FULL_ID_LEN 64

/* Whether name is a full id (64 lowercase hex) followed by exactly suffix ("" for none):
 * how files and directories named after an object are recognised. */
bool record_id_named(const char *name, const char *suffix);
#define UK_BOOT_ID_MAX 40 /* 36 characters and the NUL */

enum sandbox_state { SANDBOX_READY = 0, SANDBOX_NOTREADY = 1 };
/* Same numbering as the CRI's ContainerState. */
enum container_state { CTR_CREATED = 0, CTR_RUNNING = 1, CTR_EXITED = 2, CTR_UNKNOWN = 3 };

/* A CRI list item's protobuf encoding, kept for the next list (in memory only; made and used
 * by src/cri/cri_runtime.c): of an item's fields only the state changes after creation, so
 * the encoding is made again only when key, the state it was made in, differs. */
struct list_enc {
	uint8_t *data;
	size_t len;
	int key;
};

struct sandbox {
	char id[UK_FULL_ID_LEN + 1];
	char *name, *uid, *ns;
	uint32_t attempt;
	char *reserved_name; /* name_namespace_uid_attempt */
	json_object *labels, *annotations; /* string -> string */
	char *log_directory;
	char *runtime_handler;
	char *hostname;
	char *cgroup_parent;
	int64_t created_ns;
	enum sandbox_state state;
	/* network: empty ip when the pod has none (networking off, or released at stop) */
	char *ip, *mac;
	int prefix;
	json_object *port_mappings; /* [{"proto":"tcp","host_port":N,"container_port":N,"host_ip":"…"}] */
	json_object *dns;           /* {"servers":[…],"searches":[…],"options":[…]} */
	/* CNI mode: {"phase": "adding" | "added" | "deleting" | "deleted", "state": what ADD ran
	 * (config, arguments, results: DEL takes it back), "ips": [all its addresses]}. The
	 * pod's namespace is /run/netns/unikd-<id>. NULL in the other modes. */
	json_object *cni;
	/* the kernel's boot id when the sandbox was made ready: a ready sandbox recorded under
	 * another boot lost its network with the reboot ("" in records from before) */
	char boot_id[UK_BOOT_ID_MAX];
	/* in memory only */
	int refs;
	bool removed;
	bool adding; /* CNI: its ADD runs; invisible to lookups and lists until it is done */
	bool busy;   /* CNI: an ADD or DEL of its runs without the lock; others wait their turn */
	struct list_enc list_enc;
};

#define RECORD_DEVICES_MAX 18 /* the image's disk, the NIC, 16 CRI block devices */
#define RECORD_VOLUMES_MAX 16 /* shares, block devices and mounts of one container */

struct container {
	char id[UK_FULL_ID_LEN + 1];
	char sandbox_id[UK_FULL_ID_LEN + 1];
	char *name;
	uint32_t attempt;
	char *reserved_name; /* name_podname_namespace_uid_attempt */
	json_object *labels, *annotations;
	char *image;     /* as the user asked: ImageSpec.image */
	char *image_ref; /* the resolved image id, sha256:… */
	char *log_path;  /* absolute */
	int64_t created_ns, started_ns, finished_ns;
	enum container_state state;
	int32_t exit_code;
	char *reason, *message;
	/* the VM: its boot files in the container's directory (STATE/containers/<id>.d), or in
	 * the image store for records from before that and when the store is on another file
	 * system. disk is the container's qcow2 overlay; with a kernel, it is a data disk. */
	char *kernel, *initrd, *disk, *disk_format, *cmdline;
	/* QEMU opens the disk with snapshot=on (the guest's writes are lost); false when the
	 * disk is the container's own qcow2 overlay. Missing in a record: true. */
	bool disk_snapshot;
	char *machine, *accel, *cpu;
	char *firmware; /* "qboot" | "seabios" | NULL: the machine's choice */
	char *pit;      /* vmwrapper's spec "pit": "on" | "off" | "off-under-kvm"; NULL (older records): on */
	unsigned vcpus, memory_mib;
	/* The guest contract (src/guest): how vmwrapper reads the VM's end ("default" |
	 * "unikraft" | "solo5"), the order of its devices (["block", "net"] in the guest's
	 * order; NULL: the disk, then the NIC), whether it gets the pod's NIC (false: the guest
	 * declares no network), and for people what was chosen and why ({"framework", "version",
	 * "found_by", "why", "dhcp"}). Missing in older records: "default", NULL, true, NULL. */
	char *exit_contract;
	json_object *devices;
	bool nic;
	json_object *guest;
	/* The volumes that reach the guest (issue 15; NULL in older records and without any):
	 * 9p shares [{"tag", "path", "readonly"}] and CRI block devices [{"path", "serial",
	 * "readonly"}], both as vmwrapper's spec takes them (a "blockdev" in devices places the
	 * next one), and for ContainerStatus the CRI mounts they came from [{"container_path",
	 * "host_path", "readonly", "tag"}]. Each at most RECORD_VOLUMES_MAX. */
	json_object *shares, *blockdevs, *mounts;
	/* ContainerConfig.stdin: an attached client's input reaches the guest's serial port
	 * (vmwrapper's spec "stdin"). Missing in older records: false. */
	bool stdin_open;
	/* vmwrapper, set (and saved) before it may exec: CREATED with a wrapper_pid is a start
	 * under way, which a restarted unikd completes or undoes */
	pid_t wrapper_pid;
	uint64_t wrapper_start; /* /proc start time, against PID reuse */
	char boot_id[UK_BOOT_ID_MAX]; /* the boot wrapper_pid belongs to ("" in older records) */
	/* resources as the CRI gave them, and the VM's cgroup ("" when it has none) */
	int64_t memory_limit, cpu_quota, cpu_period, cpu_shares;
	char *cgroup;
	char *cgroup_error; /* why the VM runs without a cgroup */
	/* The warm pool's VM this container claimed (its id, 64 hex), NULL for a cold start: its
	 * vmwrapper's argv names RUN/pool/<pool_vm>, not the container (issue 18). */
	char *pool_vm;
	/* in memory only */
	int refs;
	bool removed;
	bool busy; /* a start, stop or remove is under way */
	/* RUNNING, with the record still saying "a start under way" (which start-up completes
	 * the same way): rt_container_save_started writes it once the start is answered. */
	bool record_pending;
	uint64_t stats_ts_ns, stats_cpu_ns; /* the previous stats sample, for rates */
	/* The runtime's exit watcher (src/unikd/exit_watch.c), set when the container is first
	 * claimed or watched; watch_fd is a pidfd of the RUNNING VM's vmwrapper while watched,
	 * registered under watch_key (unique, so a reused fd number never names another
	 * container); exit_pending: it ended while busy, to be applied at release. */
	struct exit_watch *watcher;
	bool watched, exit_pending;
	int watch_fd;
	uint64_t watch_key;
	struct list_enc list_enc;
};

void sandbox_free(struct sandbox *s);
void container_free(struct container *c);

json_object *sandbox_to_json(const struct sandbox *s);
int sandbox_from_json(json_object *o, struct sandbox **ret, uk_error *err);
json_object *container_to_json(const struct container *c);
/* The VM settings (kernel … memory_mib), under the names the record and vmwrapper's spec share. */
void container_vm_fields_to_json(const struct container *c, json_object *o);
int container_from_json(json_object *o, struct container **ret, uk_error *err);

/* dir/<id>.json, atomically: temp file, fsync, rename, fsync of dir. */
int record_save(const char *dir, const char *id, json_object *o, uk_error *err);
/* The same without the fsync of dir: a power loss may bring back the record before this one
 * (never a torn one). For changes a reboot overrides anyway: what a VM is doing. */
int record_save_unsynced_dir(const char *dir, const char *id, json_object *o, uk_error *err);
/* Removes dir/<id>.json and fsyncs dir; a missing record is fine. */
int record_delete(const char *dir, const char *id, uk_error *err);

#define RECORDS_QUARANTINE "quarantine"

/* Call fn for each parsed record in dir. A file that does not parse (or that fn refuses) is
 * moved to dir/quarantine/<id>.json and reported through bad() with where it went (NULL if
 * it could not be moved), never fatal. Temp files of writes cut short by a crash
 * ("<id>.json.tmp.<pid>") are removed. */
int records_load(const char *dir, int (*fn)(json_object *o, const char *id, void *ud),
		 void (*bad)(const char *path, const char *why, const char *moved_to, void *ud), void *ud,
		 uk_error *err);

#endif
