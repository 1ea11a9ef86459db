/**
 * A job's SSH session (docs/architecture.md#customize-and-debug-sessions): the customize shell, or the debug shell
 * of a failed create. It starts the session server on the job's registered public key, advertises
 * it in `ssh_containers[0]` (connection_info with `customer_access` and `cluster.local`, status
 * pending → established → complete), moves the job to `waiting_on_user`, and resolves with the
 * marker: the operator's `complete`/`failed` file, or an end-session API call (seen in the job's
 * `kiln.session_end` within a second). The configured timeout rejects with a job error. Whatever
 * happens, the server and everything the session started are gone when this returns.
 */
import os from "node:os";
import path from "node:path";
import type { SshContainer } from "../catalog/records.js";
import { startSessionServer, type SessionTarget } from "../customize/session-server.js";
import type { Marker } from "../customize/markers.js";
import { buildEnvironment } from "../engine/build-env.js";
import { jobError } from "./job-error.js";
import type { JobContext } from "./runner.js";

const API_POLL_MS = 1000;

/** jail: the image root itself; plain: the image, shown at /mnt/image in the build environment. */
export type JobSessionTarget = { mode: "jail"; root: string } | { mode: "plain"; image: string };

export async function runJobSession(ctx: JobContext, jobTarget: JobSessionTarget, workDir: string): Promise<Marker> {
  const { job, catalog, log } = ctx;
  const target: SessionTarget =
    jobTarget.mode === "jail"
      ? jobTarget
      : { ...jobTarget, environment: await buildEnvironment({ cacheDir: ctx.cacheDir, outDir: path.join(workDir, "build-env"), signal: ctx.signal, emit: (e) => log.event(e) }) };
  const key = await catalog.get("public-keys", job.public_key_id);
  if (!key) throw jobError(`public key ${job.public_key_id} no longer exists (deleted after the job was created); nobody could log in`);
  const container = job.ssh_containers[0] ?? { name: target.mode === "jail" ? "customize" : "debug", jail: target.mode === "jail", status: "pending", connection_info: {} };

  const setContainer = (patch: Partial<SshContainer>) =>
    catalog.update("jobs", job.id, (d) => ({ ...d, ssh_containers: [{ ...(d.ssh_containers[0] ?? container), ...patch }, ...d.ssh_containers.slice(1)] }));

  await using server = await startSessionServer({
    listen: { host: ctx.session.listen, port: 0 },
    authorizedKeys: [key.public_key],
    target,
    log,
    workDir,
    signal: ctx.signal,
    unauthenticated: { graceMs: ctx.session.loginGraceSeconds * 1000 },
    onEvent: (e) => {
      if (e.type === "auth-ok") void setContainer({ status: "established" }).catch(() => {});
    },
  });
  const port = server.port;
  const connection_info = {
    customer_access: { host: ctx.session.host, port },
    "cluster.local": { host: ctx.session.clusterHost ?? firstIpv4() ?? ctx.session.host, port },
  };
  await setContainer({ status: "pending", connection_info });
  await ctx.setKiln({ ssh_host_key: server.hostKeyFingerprint, session_end: null });
  await ctx.setStatus("waiting_on_user");
  const where = target.mode === "jail" ? "/tmp/complete (or /tmp/failed)" : "/mnt/image/complete (or /mnt/image/failed)";
  log.line(`ssh -p ${port} root@${ctx.session.host} (host key ${server.hostKeyFingerprint}); end the session with: touch ${where}, or kiln ims jobs end-session ${job.id}`);

  const stop = new AbortController();
  try {
    const marker = await Promise.race([server.waitForMarker(), apiEnd(ctx, stop.signal), timeout(ctx.session.timeoutSeconds, stop.signal)]);
    await setContainer({ status: "complete" });
    log.line(`session ended: ${marker}`);
    return marker;
  } finally {
    stop.abort();
    await server.close();
  }
}

/** Resolves when someone ends the session through the API (POST /v3/jobs/{id}/end-session). */
async function apiEnd(ctx: JobContext, stop: AbortSignal): Promise<Marker> {
  for (;;) {
    await new Promise((r) => setTimeout(r, API_POLL_MS));
    if (stop.aborted) return new Promise<Marker>(() => {}); // the race is over
    const j = await ctx.catalog.get("jobs", ctx.job.id).catch(() => undefined);
    const end = j?.kiln.session_end;
    if (end === "complete" || end === "failed") {
      ctx.log.line(`session ended through the API: ${end}`);
      return end;
    }
  }
}

function timeout(seconds: number, stop: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const t = setTimeout(() => reject(jobError(`the session timed out: no complete or failed marker within ${seconds} s (--session-timeout); no image was made`)), seconds * 1000);
    stop.addEventListener("abort", () => clearTimeout(t), { once: true });
  });
}

function firstIpv4(): string | undefined {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}
