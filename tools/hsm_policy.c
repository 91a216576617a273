/* hsm policy: check a policy file offline; ask hsmd to explain, run, reload or report
 * the policy it has loaded (docs/policy.md). */
#include "tools/hsm_policy.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "policy/policy.h"
#include "tools/hsm_client.h"
#include "tools/hsm_print.h"

#define P_OK	0
#define P_FAIL	1
#define P_USAGE 2

static void policy_usage(FILE *f)
{
	fprintf(f,
		"usage: hsm policy check [-v] [-c HSMD.CONF | --site NAME...] FILE\n"
		"       hsm [--json] policy explain PATH\n"
		"       hsm [--json] policy run [--dry-run] [--max N]\n"
		"       hsm [--json] policy reload\n"
		"       hsm [--json] policy status\n"
		"       hsm policy pause | resume\n\n"
		"check    compile FILE here (hsmd not needed): every error as FILE:LINE:COL,\n"
		"         warnings for rules that never match or are shadowed; exit 1 on error.\n"
		"         -v prints every statement as understood. Site names are checked\n"
		"         against --site NAME (repeatable) or the sites of hsmd.conf (-c).\n"
		"explain  which exclude, class and rule decide each action for PATH, with the\n"
		"         values compared\n"
		"run      evaluate the policy over the whole catalog now and queue the jobs;\n"
		"         --dry-run lists what would be recalled, placed, archived and released\n"
		"         (at most --max N entries, default 10000) with totals, doing nothing\n"
		"reload   read the policy file again; a file with errors keeps the old policy\n"
		"status   the loaded policy, the last pass, the job queues\n"
		"pause    let no policy job start (passes still plan and queue) until resume\n"
		"         or a restart of hsmd; jobs in flight finish\n");
}

static int policy_check(int argc, char **argv)
{
	static const struct option lo[] = {{"verbose", no_argument, NULL, 'v'},
					   {"config", required_argument, NULL, 'c'},
					   {"site", required_argument, NULL, 'S'},
					   {"help", no_argument, NULL, 'h'},
					   {0}};
	const char *sites[HSM_PEERS_MAX + 2];
	struct policy_env env = {0};
	struct policy_diags d = {0};
	struct hsm_config *cfg = NULL;
	struct policy *p;
	const char *conf = NULL;
	size_t nsites = 0, len;
	char *text, err[1024];
	int ch, verbose = 0, rc;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+vc:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'v':
			verbose = 1;
			break;
		case 'c':
			conf = optarg;
			break;
		case 'S':
			if (nsites == HSM_PEERS_MAX + 1) {
				fprintf(stderr, "hsm: policy check: too many --site\n");
				return P_USAGE;
			}
			sites[nsites++] = optarg;
			break;
		case 'h':
			policy_usage(stdout);
			return P_OK;
		default:
			fprintf(stderr, "hsm: policy check: unknown option or missing argument\n");
			policy_usage(stderr);
			return P_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "hsm: policy check takes exactly one FILE\n");
		return P_USAGE;
	}
	if (conf) {
		if (config_load(conf, &cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "hsm: policy check: %s\n", err);
			return P_FAIL;
		}
		sites[nsites++] = cfg->site;
		for (size_t i = 0; i < cfg->npeers && nsites < HSM_PEERS_MAX + 2; i++)
			sites[nsites++] = cfg->peers[i].name;
	}
	text = policy_read_file(argv[optind], &len, err, sizeof(err));
	if (!text) {
		fprintf(stderr, "hsm: policy check: %s\n", err);
		config_free(cfg);
		return P_FAIL;
	}
	if (nsites) {
		env.sites = sites;
		env.nsites = nsites;
	}
	env.resolve = policy_resolve_system;
	p = policy_compile(argv[optind], text, len, &env, &d);
	free(text);
	for (size_t i = 0; i < d.n; i++) {
		char line[700];

		fprintf(stderr, "%s\n",
			policy_diag_format(p, argv[optind], &d.v[i], line, sizeof(line)));
	}
	if (p) {
		if (verbose)
			policy_dump(p, stdout);
		printf("%s: ok, %zu warning%s\n", argv[optind], d.warnings,
		       d.warnings == 1 ? "" : "s");
		rc = P_OK;
	} else {
		fprintf(stderr, "%s: %zu error%s, %zu warning%s\n", argv[optind], d.errors,
			d.errors == 1 ? "" : "s", d.warnings, d.warnings == 1 ? "" : "s");
		rc = P_FAIL;
	}
	policy_free(p);
	policy_diags_free(&d);
	config_free(cfg);
	return rc;
}

static void print_run(json_object *item)
{
	char size[HSM_FMT_LEN];
	json_object *line = json_object_object_get(item, "line");
	const char *reason = hsm_jstr(item, "reason");

	hsm_fmt_size((uint64_t)json_object_get_int64(json_object_object_get(item, "size")), size);
	printf("%-8s %10s  ", hsm_jstr(item, "action") ? hsm_jstr(item, "action") : "?", size);
	hsm_put_jstr(stdout, json_object_object_get(item, "path"));
	if (line)
		printf("  (line %d%s%s)", json_object_get_int(line), reason ? ": " : "",
		       reason ? reason : "");
	putchar('\n');
}

static void print_totals(json_object *r)
{
	static const char *const order[] = {"recall", "place", "archive", "release", "skip"};
	json_object *tot = json_object_object_get(r, "totals");

	printf("%s: %lld files evaluated (%lld excluded) in %.3f s\n",
	       hsm_jbool(r, "dry_run") ? "dry run" : "run",
	       (long long)json_object_get_int64(json_object_object_get(r, "evaluated")),
	       (long long)json_object_get_int64(json_object_object_get(r, "excluded")),
	       json_object_get_double(json_object_object_get(r, "seconds")));
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		json_object *t = json_object_object_get(tot, order[i]);
		char size[HSM_FMT_LEN];

		hsm_fmt_size((uint64_t)json_object_get_int64(json_object_object_get(t, "bytes")),
			     size);
		printf("  %-8s %8lld files %10s\n", order[i],
		       (long long)json_object_get_int64(json_object_object_get(t, "files")), size);
	}
}

static void print_status(json_object *r)
{
	json_object *jobs = json_object_object_get(r, "jobs");
	const char *err = hsm_jstr(r, "last_reload_error");

	printf("policy file  %s\n", hsm_jstr(r, "file") ? hsm_jstr(r, "file") : "(none)");
	printf("loaded       %s\n", hsm_jbool(r, "loaded") ? "yes" : "no");
	printf("passes       %lld, last %.3f s over %lld files\n",
	       (long long)json_object_get_int64(json_object_object_get(r, "passes")),
	       json_object_get_double(json_object_object_get(r, "last_pass_seconds")),
	       (long long)json_object_get_int64(json_object_object_get(r, "last_pass_files")));
	json_object_object_foreach(jobs, k, v)
	{
		printf("%-12s queued %lld, done %lld, failed %lld\n", k,
		       (long long)json_object_get_int64(json_object_object_get(v, "queued")),
		       (long long)json_object_get_int64(json_object_object_get(v, "done")),
		       (long long)json_object_get_int64(json_object_object_get(v, "failed")));
	}
	if (err)
		printf("last reload FAILED:\n%s\n", err);
}

static int policy_remote(const char *socket, int json, const char *op, int argc, char **argv)
{
	static const struct option lo[] = {{"dry-run", no_argument, NULL, 'n'},
					   {"max", required_argument, NULL, 'm'},
					   {"json", no_argument, NULL, 'J'},
					   {"help", no_argument, NULL, 'h'},
					   {0}};
	json_object *req, *opts, *msg = NULL, *result;
	struct hsm_client *c;
	char err[1024], *abs = NULL;
	int ch, dry = 0, rc = P_FAIL;
	long max = -1;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+nm:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'n':
			dry = 1;
			break;
		case 'm': {
			char *end;

			errno = 0;
			max = strtol(optarg, &end, 10);
			if (errno || *end || max < 0) {
				fprintf(stderr, "hsm: policy run: --max needs a number >= 0\n");
				return P_USAGE;
			}
			break;
		}
		case 'J':
			json = 1;
			break;
		case 'h':
			policy_usage(stdout);
			return P_OK;
		default:
			fprintf(stderr, "hsm: policy %s: unknown option or missing argument\n", op);
			return P_USAGE;
		}
	}
	if ((dry || max >= 0) && strcmp(op, "run")) {
		fprintf(stderr, "hsm: policy %s: --dry-run and --max are options of run\n", op);
		return P_USAGE;
	}
	if (!strcmp(op, "explain")) {
		if (optind != argc - 1) {
			fprintf(stderr, "hsm: policy explain takes exactly one PATH\n");
			return P_USAGE;
		}
		abs = realpath(argv[optind], NULL);
		if (!abs) {
			fprintf(stderr, "hsm: policy explain: %s: %s\n", argv[optind],
				strerror(errno));
			return P_FAIL;
		}
	} else if (optind != argc) {
		fprintf(stderr, "hsm: policy %s takes no arguments, got '%s'\n", op, argv[optind]);
		return P_USAGE;
	}
	c = hsm_client_connect(socket, err, sizeof(err));
	if (!c) {
		fprintf(stderr, "hsm: %s\n", err);
		free(abs);
		return P_FAIL;
	}
	req = json_object_new_object();
	opts = json_object_new_object();
	json_object_object_add(req, "v", json_object_new_int(1));
	json_object_object_add(req, "verb", json_object_new_string("policy"));
	json_object_object_add(opts, "op", json_object_new_string(op));
	if (dry)
		json_object_object_add(opts, "dry_run", json_object_new_boolean(1));
	if (max >= 0)
		json_object_object_add(opts, "max", json_object_new_int64(max));
	json_object_object_add(req, "opts", opts);
	if (abs) {
		json_object *a = json_object_new_array();

		json_object_array_add(a, json_object_new_string(abs));
		json_object_object_add(req, "paths", a);
	}
	if (hsm_client_send(c, req) < 0)
		goto client_error;
	for (;;) {
		json_object_put(msg);
		if (hsm_client_read(c, &msg) < 0)
			goto client_error;
		if (!strcmp(hsm_jstr(msg, "type") ? hsm_jstr(msg, "type") : "", "end"))
			break;
		if (json)
			printf("%s\n",
			       json_object_to_json_string_ext(
				   msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		else
			print_run(msg);
	}
	if (!hsm_jbool(msg, "ok")) {
		if (json)
			printf("%s\n",
			       json_object_to_json_string_ext(
				   msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		fprintf(stderr, "hsm: policy %s: %s\n", op,
			hsm_jstr(msg, "error") ? hsm_jstr(msg, "error") : "failed");
		goto out;
	}
	result = json_object_object_get(msg, "result");
	if (json) {
		printf("%s\n",
		       json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (!strcmp(op, "explain")) {
		json_object *lines = json_object_object_get(result, "lines");

		if (!lines)
			printf("no policy is loaded\n");
		for (size_t i = 0; lines && i < json_object_array_length(lines); i++)
			printf("%s\n", json_object_get_string(json_object_array_get_idx(lines, i)));
	} else if (!strcmp(op, "run")) {
		print_totals(result);
	} else if (!strcmp(op, "pause") || !strcmp(op, "resume")) {
		printf("policy jobs %s\n", op[0] == 'p' ? "paused" : "resumed");
	} else if (!strcmp(op, "reload")) {
		printf("policy %s reloaded, %d warning(s)\n", hsm_jstr(result, "file"),
		       json_object_get_int(json_object_object_get(result, "warnings")));
	} else {
		print_status(result);
	}
	rc = P_OK;
	goto out;
client_error:
	fprintf(stderr, "hsm: %s\n", hsm_client_error(c));
out:
	json_object_put(msg);
	json_object_put(req);
	hsm_client_close(c);
	free(abs);
	return rc;
}

int hsm_policy_main(int argc, char **argv, const char *socket, int json)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		policy_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? P_USAGE : P_OK;
	}
	if (!strcmp(argv[1], "check"))
		return policy_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "explain") || !strcmp(argv[1], "run") || !strcmp(argv[1], "reload") ||
	    !strcmp(argv[1], "status") || !strcmp(argv[1], "pause") || !strcmp(argv[1], "resume"))
		return policy_remote(socket, json, argv[1], argc - 1, argv + 1);
	fprintf(stderr, "hsm: policy: no command '%s'\n", argv[1]);
	policy_usage(stderr);
	return P_USAGE;
}
