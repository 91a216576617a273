/* hsmd: the hierarchical storage daemon. See docs/admin.md. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsmd/reload.h"
#include "hsmd/supervisor.h"
#include "lib/config.h"
#include "lib/log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: hsmd [-c FILE] [-f] [-n] [-d]\n"
		"  -c FILE  configuration file (default %s/hsm/hsmd.conf)\n"
		"  -f       stay in the foreground and log to stderr\n"
		"  -n       check the configuration, say what a reload would change, exit\n"
		"  -d       log debug messages\n",
		SYSCONFDIR);
}

int main(int argc, char **argv)
{
	char path[4096], err[4096];
	const char *conf = NULL;
	struct hsm_config *cfg;
	int foreground = 0, check = 0, debug = 0, c;

	while ((c = getopt(argc, argv, "c:fndh")) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'n':
			check = 1;
			break;
		case 'd':
			debug = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!conf) {
		snprintf(path, sizeof(path), "%s/hsm/hsmd.conf", SYSCONFDIR);
		conf = path;
	}
	if (reload_load(conf, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "hsmd: %s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: configuration OK\n", conf);
		reload_report(cfg, stdout);
		config_free(cfg);
		return 0;
	}
	if (debug)
		cfg->log_level = LOG_LVL_DEBUG;
	log_init("hsmd", cfg->log_level, foreground);
	if (!foreground && daemon(0, 0) < 0) {
		fprintf(stderr, "hsmd: cannot become a daemon: %s\n", strerror(errno));
		config_free(cfg);
		return 1;
	}
	return supervisor_run(cfg, debug);
}
