// Real servers for the SDK's integration tests: a nats-server and an lhttpd on free
// loopback ports, in a temporary directory, stopped by pid when the test ends. Not a
// test file itself (the test script names *.test.js only).
//
// Environment: LHTTPD (default ../../build/lhttpd from here); LH_REQUIRE_INTEGRATION=1
// turns a missing binary, nats-server or "ws" package into a failure instead of a skip
// (tests/integration/sdk.bats sets it).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, readdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const LHTTPD = process.env.LHTTPD || path.resolve(here, '../../../build/lhttpd');

/** Resolves to the "ws" WebSocket class, or null when the package is not installed. */
export async function loadWs() {
  try {
    return (await import('ws')).WebSocket;
  } catch {
    return null;
  }
}

/** Returns a reason to skip the integration tests, or null when they can run. Throws
 *  instead when LH_REQUIRE_INTEGRATION=1. */
export async function missingPrerequisite() {
  let why = null;
  if (!existsSync(LHTTPD)) why = `no lhttpd binary at ${LHTTPD} (run make, or set LHTTPD)`;
  else if (spawnSync('nats-server', ['--version']).error) why = 'nats-server is not on PATH';
  else if (!(await loadWs())) why = 'the "ws" package is missing (run npm ci in clients/js)';
  if (why && process.env.LH_REQUIRE_INTEGRATION === '1') throw new Error(why);
  return why;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls cond() (sync or async) until it is truthy; throws after ms milliseconds. */
export async function waitFor(cond, ms = 5000, what = String(cond)) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`gave up after ${ms} ms waiting for: ${what}`);
    await sleep(10);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(500);
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
    s.on('timeout', () => { s.destroy(); resolve(false); });
  });
}

// Any HTTP answer at all from 127.0.0.1:port: a worker is accepting.
function httpAnswers(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setTimeout(1000);
    s.on('connect', () => s.write('GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    s.on('data', (d) => { got += d; if (got.startsWith('HTTP/1.1 ')) { s.destroy(); resolve(true); } });
    s.on('error', () => resolve(false));
    s.on('timeout', () => { s.destroy(); resolve(false); });
    s.on('close', () => resolve(got.startsWith('HTTP/1.1 ')));
  });
}

function children(pid) {
  const out = [];
  let tasks = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let list = '';
    try {
      list = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of list.split(/\s+/).filter(Boolean)) out.push(Number(c), ...children(Number(c)));
  }
  return out;
}

function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** Stops a process we started (SIGTERM, SIGKILL after ms) and the descendants it had. */
async function stopProcess(child, ms = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const kids = children(child.pid);
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exited;
  clearTimeout(timer);
  for (const k of kids) {
    try {
      await waitFor(() => !alive(k), 2000);
    } catch {
      try { process.kill(k, 'SIGKILL'); } catch { /* gone meanwhile */ }
    }
  }
}

/**
 * Starts nats-server and lhttpd for one test and stops them when it ends (t.after).
 * `config` is merged into the lhttpd configuration (listen, nats, control_socket and
 * short drain/shutdown timeouts are set here). With `{ jetstream: true }` nats-server
 * runs with JetStream (-js, its store in the test's directory), for history namespaces.
 * Returns { url, port, dir, conf, log(), reload(), stop(), start(), natsPort, clients }.
 */
export async function servers(t, config = {}, { jetstream = false } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lhttp-sdk-'));
  const started = [];
  const clients = [];
  const natsPort = await freePort();
  const natsArgs = ['-a', '127.0.0.1', '-p', String(natsPort)];
  if (jetstream) natsArgs.push('-js', '-sd', path.join(dir, 'jetstream'));
  const nats = spawn('nats-server', natsArgs, { stdio: 'ignore' });
  started.push(nats);
  t.after(async () => {
    for (const c of clients) c.close();
    for (const p of started.reverse()) await stopProcess(p);
    if (process.env.LH_KEEP_TMP !== '1') rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => tcpOpen(natsPort), 5000, `nats-server on ${natsPort}`);

  const port = await freePort();
  const conf = path.join(dir, 'lhttpd.json');
  const logFile = path.join(dir, 'lhttpd.log');
  const cfg = {
    listen: [`127.0.0.1:${port}`],
    workers: 2,
    control_socket: path.join(dir, 'ctl.sock'),
    drain_timeout_ms: 300,
    shutdown_timeout_ms: 500,
    ...config,
    nats: { servers: [`nats://127.0.0.1:${natsPort}`], ...(config.nats ?? {}) },
  };
  writeFileSync(conf, JSON.stringify(cfg, null, 2));
  let lhttpd = null;

  const h = {
    port,
    dir,
    conf,
    natsPort,
    clients, // LhttpClients to close before the servers stop
    url: `ws://127.0.0.1:${port}/ws`,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    /** Starts lhttpd (again) on the same port; resolves when a worker answers HTTP. */
    async start() {
      const fd = openSync(logFile, 'a');
      lhttpd = spawn(LHTTPD, ['-c', conf], { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      started.push(lhttpd);
      const proc = lhttpd;
      await waitFor(async () => {
        if (proc.exitCode !== null) throw new Error(`lhttpd exited ${proc.exitCode}:\n${h.log()}`);
        return httpAnswers(port);
      }, 10000, `lhttpd answering on ${port}`);
    },
    /** Graceful stop (clients get 1001); resolves when the master has exited. */
    async stop() {
      await stopProcess(lhttpd);
    },
    /** `lhttpd -s reload`: resolves when the new workers serve. */
    reload() {
      const r = spawnSync(LHTTPD, ['-s', 'reload', '-c', conf], { encoding: 'utf8', timeout: 15000 });
      if (r.status !== 0) throw new Error(`lhttpd -s reload exited ${r.status}: ${r.stdout}${r.stderr}`);
    },
  };
  await h.start();
  return h;
}
