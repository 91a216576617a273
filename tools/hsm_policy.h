/* hsm policy: check, explain, run, reload, status (docs/policy.md). */
#ifndef HSM_TOOLS_POLICY_H
#define HSM_TOOLS_POLICY_H

/* argv[0] is "policy". Returns the exit status. */
int hsm_policy_main(int argc, char **argv, const char *socket, int json);

#endif
