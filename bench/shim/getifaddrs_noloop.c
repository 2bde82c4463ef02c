/* getifaddrs_noloop: an LD_PRELOAD shim that hides the loopback flag of "lo".
 *
 * Janus (through its own interface enumeration and libnice's) never gathers a host
 * candidate on an interface flagged IFF_LOOPBACK, so on a machine where the benchmark
 * runs every system on 127.0.0.1 it would offer no candidate the load clients can
 * reach. Clearing the flag on "lo" (and nothing else) is the smallest change that
 * lets it gather 127.0.0.1 like Dockcast and mediasoup do; the harness builds this
 * file with the machine's cc into the run's folder:
 *
 *     cc -shared -fPIC -o getifaddrs_noloop.so getifaddrs_noloop.c -ldl
 *
 * and starts Janus with LD_PRELOAD pointing at the result.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>
#include <string.h>

typedef int (*getifaddrs_fn)(struct ifaddrs **);

int getifaddrs(struct ifaddrs **ifap) {
	/* the next definition in link order: libc's */
	static getifaddrs_fn real = NULL;
	if (real == NULL) {
		real = (getifaddrs_fn)dlsym(RTLD_NEXT, "getifaddrs");
		if (real == NULL) {
			errno = ENOSYS;
			return -1;
		}
	}
	int rc = real(ifap);
	if (rc != 0 || ifap == NULL)
		return rc;
	for (struct ifaddrs *ifa = *ifap; ifa != NULL; ifa = ifa->ifa_next) {
		if (ifa->ifa_name != NULL && strcmp(ifa->ifa_name, "lo") == 0)
			ifa->ifa_flags &= ~(unsigned int)IFF_LOOPBACK;
	}
	return rc;
}
