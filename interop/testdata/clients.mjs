// Runs exec cases through upstream microsandbox's Node SDK (its raw
// AgentClient, which speaks the relay handshake in Rust inside the napi
// library) against a relay socket, and prints what it observed as one JSON
// object on stdout. The Go test decides what is right; this script only
// reports. The SDK ships no CBOR codec, so a small one is spelled out here.
//
// usage: node clients.mjs SDK_INDEX_JS SOCKET

const [sdkPath, socket] = process.argv.slice(2);
const { AgentClient, FLAG_SESSION_START } = await import(sdkPath);

// ---- CBOR, the subset the protocol uses ------------------------------

function head(major, n) {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) { const b = Buffer.alloc(3); b[0] = m | 25; b.writeUInt16BE(n, 1); return b; }
  if (n < 0x100000000) { const b = Buffer.alloc(5); b[0] = m | 26; b.writeUInt32BE(n, 1); return b; }
  const b = Buffer.alloc(9); b[0] = m | 27; b.writeBigUInt64BE(BigInt(n), 1); return b;
}

function enc(v) {
  if (v === null || v === undefined) return Buffer.from([0xf6]);
  if (v === true) return Buffer.from([0xf5]);
  if (v === false) return Buffer.from([0xf4]);
  if (typeof v === "number") return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.concat([head(2, v.length), Buffer.from(v)]);
  if (typeof v === "string") { const b = Buffer.from(v, "utf8"); return Buffer.concat([head(3, b.length), b]); }
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(enc)]);
  const keys = Object.keys(v);
  return Buffer.concat([head(5, keys.length), ...keys.flatMap((k) => [enc(k), enc(v[k])])]);
}

function dec(buf) {
  let off = 0;
  function arg(ai) {
    if (ai < 24) return ai;
    const n = 1 << (ai - 24);
    let x = 0n;
    for (let i = 0; i < n; i++) x = (x << 8n) | BigInt(buf[off++]);
    return Number(x);
  }
  function item() {
    const ib = buf[off++];
    const major = ib >> 5, ai = ib & 0x1f;
    if (major === 7) {
      if (ai === 20) return false;
      if (ai === 21) return true;
      if (ai === 22 || ai === 23) return null;
      throw new Error(`cbor: simple/float ${ai} not supported`);
    }
    const n = arg(ai);
    switch (major) {
      case 0: return n;
      case 1: return -1 - n;
      case 2: { const b = buf.subarray(off, off + n); off += n; return Buffer.from(b); }
      case 3: { const s = buf.toString("utf8", off, off + n); off += n; return s; }
      case 4: { const a = []; for (let i = 0; i < n; i++) a.push(item()); return a; }
      case 5: { const o = {}; for (let i = 0; i < n; i++) { const k = item(); o[k] = item(); } return o; }
      default: throw new Error(`cbor: major type ${major} not supported`);
    }
  }
  return item();
}

// ---- the protocol -----------------------------------------------------

let gen = 1; // the envelope "v": min(ours, the ready frame's), set below

function body(t, payload) {
  return enc({ v: gen, t, p: payload === undefined ? Buffer.alloc(0) : enc(payload) });
}

function execRequest(cmd, args) {
  return body("core.exec.request", {
    cmd, args, env: ["PATH=/usr/local/bin:/usr/bin:/bin"], cwd: null, user: null,
    tty: false, rows: 24, cols: 80, rlimits: [],
  });
}

// run starts a command and collects its session until the terminal frame.
// onStarted, if given, runs once core.exec.started arrived.
async function run(client, cmd, args, onStarted) {
  const stream = await client.stream(FLAG_SESSION_START, execRequest(cmd, args));
  const r = { id: stream.id, stdout: "", stderr: "", types: [], code: null, failed: null };
  for await (const f of stream) {
    const m = dec(f.body);
    const p = m.p.length ? dec(m.p) : null;
    r.types.push(m.t);
    switch (m.t) {
      case "core.exec.started": r.pid = p.pid; if (onStarted) await onStarted(stream.id); break;
      case "core.exec.stdout": r.stdout += p.data.toString("utf8"); break;
      case "core.exec.stderr": r.stderr += p.data.toString("utf8"); break;
      case "core.exec.exited": r.code = p.code; break;
      case "core.exec.failed": r.failed = p; break;
    }
    if (f.flags & 1) break; // FLAG_TERMINAL
  }
  await stream.close();
  return r;
}

async function timed(name, f) {
  const t0 = performance.now();
  try {
    const r = await f();
    return { name, ok: true, ms: Math.round(performance.now() - t0), ...r };
  } catch (e) {
    return { name, ok: false, ms: Math.round(performance.now() - t0), error: String(e && e.stack || e) };
  }
}

const report = { cases: [] };
const a = await AgentClient.connect(socket, { timeoutMs: 10000 });
const ready = dec(a.readyBytes());
report.ready = { v: ready.v, t: ready.t, payload: dec(ready.p) };
gen = Math.min(1, ready.v);

report.cases.push(await timed("echo", () => run(a, "echo", ["hello from upstream's SDK"])));
report.cases.push(await timed("exit_code", () => run(a, "sh", ["-c", "echo out; echo err >&2; exit 3"])));

report.cases.push(await timed("stdin", async () => {
  const chunks = [Buffer.from("line one\n"), Buffer.alloc(200000, "x"), Buffer.from("\nlast line\n")];
  const r = await run(a, "cat", [], async (id) => {
    for (const c of chunks) await a.send(id, 0, body("core.exec.stdin", { data: c }));
    await a.send(id, 0, body("core.exec.stdin", { data: Buffer.alloc(0) })); // EOF
  });
  r.sent = Buffer.concat(chunks).toString("utf8");
  r.stdoutMatches = r.stdout === r.sent;
  r.stdoutLength = r.stdout.length;
  delete r.stdout; delete r.sent;
  return r;
}));

report.cases.push(await timed("signal", () => run(a, "sleep", ["30"], async (id) => {
  await a.send(id, 0, body("core.exec.signal", { signal: 15 }));
})));

// Two clients at once: the second takes the next slot, whose id range
// tells which handshake form the SDK understood.
report.cases.push(await timed("two_clients", async () => {
  const b = await AgentClient.connect(socket, { timeoutMs: 10000 });
  try {
    const script = (n) => ["-c", `echo ${n}1; sleep 0.3; echo ${n}2`];
    const [ra, rb] = await Promise.all([run(a, "sh", script("a")), run(b, "sh", script("b"))]);
    return { first: ra, second: rb };
  } finally {
    await b.close();
  }
}));

await a.close();
process.stdout.write(JSON.stringify(report) + "\n");
