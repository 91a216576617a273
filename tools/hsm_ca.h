/* `hsm ca`: the deployment CA's command (init, issue, show), a thin front end to
 * lib/pki.h. Needs no hsmd: it only reads and writes files. */
#ifndef HSM_CA_H
#define HSM_CA_H

#define HSM_CA_DIR_DEFAULT  "/etc/hsmd/pki"
#define HSM_CA_NAME_DEFAULT "hsmd deployment CA"

/* argv[0] is "ca". Returns the exit status: 0 done, 1 failed, 2 usage error. Messages
 * go to stderr as "hsm: ca: ...", what was written to stdout. */
int hsm_ca_main(int argc, char **argv);

#endif
