/* agent.c - placeholder until the protocol loop lands. */
#include "workers/agent.h"

int kiln_agent_run(const struct kiln_worker_config *cfg, const struct kiln_host *host,
                   const struct kiln_logger *lg, struct kiln_error *err)
{
    (void)cfg;
    (void)host;
    (void)lg;
    return kiln_fail(err, KILN_EUNSUPPORTED, "the worker agent is not implemented yet");
}
