/* qmp-exec SOCKET [--events-ms N] COMMAND[=JSON-ARGS]...
 * Runs QMP commands in order through unikd's QMP client and prints one JSON line per
 * reply ({"command":…,"return":…} or {"command":…,"error":{…}}) and per event. */
#include <poll.h>
#include <string.h>

#include "../../src/common/util.h"
#include "../../src/qmp/qmp.h"

static void print_event(qmp *q, const char *event, json_object *data, uint64_t ts, void *ud)
{
	(void)q;
	(void)ud;
	(void)ts;
	_cleanup_json_ json_object *o = json_object_new_object();
	json_object_object_add(o, "event", json_object_new_string(event ? event : "(closed)"));
	if (data)
		json_object_object_add(o, "data", json_object_get(data));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: qmp-exec SOCKET [--events-ms N] COMMAND[=JSON-ARGS]...\n");
		return 2;
	}
	_cleanup_qmp_ qmp *q = NULL;
	uk_error err = { 0 };
	if (qmp_connect_unix(argv[1], &q, &err) < 0 || qmp_wait_ready(q, 5000, &err) < 0) {
		fprintf(stderr, "qmp-exec: %s\n", err.msg);
		return 1;
	}
	qmp_set_event_handler(q, print_event, NULL);
	int events_ms = 0, rc = 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--events-ms") == 0 && i + 1 < argc) {
			events_ms = atoi(argv[++i]);
			continue;
		}
		_cleanup_free_ char *cmd = strdup(argv[i]);
		char *eq = strchr(cmd, '=');
		json_object *args = NULL;
		if (eq) {
			*eq = '\0';
			args = json_tokener_parse(eq + 1);
			if (!args) {
				fprintf(stderr, "qmp-exec: arguments of %s are not JSON\n", cmd);
				return 2;
			}
		}
		_cleanup_json_ json_object *ret = NULL;
		_cleanup_json_ json_object *o = json_object_new_object();
		json_object_object_add(o, "command", json_object_new_string(cmd));
		memset(&err, 0, sizeof(err));
		int r = qmp_execute(q, cmd, args, 10000, &ret, &err);
		if (r < 0) {
			json_object_object_add(o, "error", json_object_new_string(err.msg));
			rc = 1;
		} else {
			json_object_object_add(o, "return", ret ? json_object_get(ret) : NULL);
		}
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
	}
	/* Wait for events that follow the last command, e.g. POWERDOWN. */
	uint64_t end = uk_now_mono_ns() + (uint64_t)events_ms * 1000000ull;
	while (events_ms > 0 && qmp_get_state(q) != QMP_STATE_CLOSED) {
		uint64_t now = uk_now_mono_ns();
		if (now >= end)
			break;
		struct pollfd p = { .fd = qmp_fd(q), .events = qmp_poll_events(q) };
		if (poll(&p, 1, (int)((end - now) / 1000000ull) + 1) > 0 && qmp_process(q) < 0)
			break;
	}
	return rc;
}
