#include "hsmd/reload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsmd/confdiff.h"
#include "hsmd/policy_run.h"
#include "lib/config.h"
#include "lib/fdio.h"
#include "lib/log.h"

int reload_load(const char *path, struct hsm_config **out, char *err, size_t errlen)
{
	struct hsm_config *cfg;

	*out = NULL;
	if (config_load(path, &cfg, err, errlen) < 0)
		return -1;
	if (config_check_volumes(cfg, err, errlen) < 0 ||
	    policy_engine_check(cfg, err, errlen) < 0) {
		config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

void reload_snapshot_path(const struct hsm_config *cfg, char *buf, size_t len)
{
	snprintf(buf, len, "%s/running.conf", cfg->state_dir);
}

int reload_snapshot_write(const struct hsm_config *cfg)
{
	char path[4200], tmp[4300];
	int fd;

	reload_snapshot_path(cfg, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_warn("cannot write %s", tmp);
		return -1;
	}
	if (fd_write_all(fd, cfg->text, cfg->text_len) < 0 || fsync(fd) < 0) {
		log_warn("cannot write %s", tmp);
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		log_warn("cannot rename %s to %s", tmp, path);
		unlink(tmp);
		return -1;
	}
	return 0;
}

void reload_report(const struct hsm_config *cfg, FILE *out)
{
	struct hsm_config *run;
	struct confdiff d;
	char path[4200], err[1024];

	reload_snapshot_path(cfg, path, sizeof(path));
	if (access(path, F_OK) < 0) {
		fprintf(out,
			"no hsmd runs with state directory %s: all of it applies at the "
			"next start\n",
			cfg->state_dir);
		return;
	}
	if (config_load(path, &run, err, sizeof(err)) < 0) {
		fprintf(out, "cannot compare with the running configuration: %s\n", err);
		return;
	}
	confdiff(run, cfg, &d);
	config_free(run);
	if (!d.n) {
		fprintf(out,
			"same as the running configuration (%s); a reload reads the policy "
			"file again\n",
			path);
		return;
	}
	fprintf(out, "changed since the running configuration (%s):\n", path);
	for (size_t i = 0; i < d.n; i++)
		fprintf(out, "  %s: %s\n", d.item[i].key, confdiff_class_says(d.item[i].cls));
	if (d.truncated)
		fprintf(out, "  (and more)\n");
	if (d.worst == CONFDIFF_RESTART)
		fprintf(out,
			"a reload applies none of it: restart hsmd (systemctl restart hsmd)\n");
	else if (d.worst == CONFDIFF_WORKER)
		fprintf(out, "a reload (systemctl reload hsmd) applies all of it; it restarts the "
			     "worker: readers wait, hsm commands in progress end\n");
	else
		fprintf(out, "a reload (systemctl reload hsmd) applies all of it in place\n");
}
