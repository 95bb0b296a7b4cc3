#!/usr/bin/env node
// Stand-in (with a fix for "char" columns in CHECK constraints) for Prisma's Rust `schema-engine` binary, for machines that cannot download it.
// Use: PRISMA_SCHEMA_ENGINE_BINARY=<path to this file> prisma migrate dev|deploy|diff|status ...
// Built on the official WASM schema engine (@prisma/schema-engine-wasm) + @prisma/adapter-pg.
// Speaks the same stdin/stdout JSON-RPC the Prisma CLI uses with the binary.
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

// Packages are resolved from the project that runs Prisma (its working directory), so this file
// can live outside the project. The project needs pg, @prisma/adapter-pg,
// @prisma/driver-adapter-utils and @prisma/schema-engine-wasm among its devDependencies.
const require = createRequire(path.join(process.cwd(), "package.json"));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const pg = (await load("pg")).default;
const { PrismaPg } = await load("@prisma/adapter-pg");
const { bindMigrationAwareSqlAdapterFactory } = await load("@prisma/driver-adapter-utils");
const wasmDir = path.dirname(require.resolve("@prisma/schema-engine-wasm"));
const log = (level, message, extra = {}) =>
  process.stderr.write(JSON.stringify({ timestamp: new Date().toISOString(), level, fields: { message, ...extra }, target: "schema_engine::logger" }) + "\n");

// ---- args: [--datamodels F]... [--datasource JSON] [--enabled-preview-features X] [cli CMD] | --version
const argv = process.argv.slice(2);
const datamodelPaths = [];
let datasource = {};
let cliCommand = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--version" || a === "-V") {
    const v = JSON.parse(fs.readFileSync(path.join(wasmDir, "package.json"), "utf8")).version;
    console.log(`schema-engine-cli ${v.split(".").pop()} (wasm shim)`);
    process.exit(0);
  } else if (a === "--datamodels") datamodelPaths.push(argv[++i]);
  else if (a === "--datasource") datasource = JSON.parse(argv[++i]);
  else if (a === "--enabled-preview-features" || a === "--extension-types") i++;
  else if (a === "cli") cliCommand = argv[++i];
}

// ---- pg connection config (discrete fields so the shadow-db override of `database` works)
function pgConfigFrom(url) {
  const u = new URL(url);
  return {
    host: u.hostname, port: Number(u.port || 5432),
    user: decodeURIComponent(u.username), password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.slice(1)) || "postgres",
    ...(u.searchParams.get("sslmode") && u.searchParams.get("sslmode") !== "disable" ? { ssl: { rejectUnauthorized: false } } : {}),
    allowExitOnIdle: true,
  };
}
const url = datasource.url ?? process.env.DATABASE_URL;
if (!url) { log("ERROR", "no datasource url", { error_code: "P1012" }); process.exit(1); }
const pgConfig = pgConfigFrom(url);
const quoteIdent = (s) => `"${s.replaceAll('"', '""')}"`;

async function withMaintenanceClient(fn) {
  const c = new pg.Client({ ...pgConfig, database: "postgres" });
  await c.connect();
  try { return await fn(c); } finally { await c.end(); }
}

// ---- `schema-engine cli <cmd>` one-shot commands used by `migrate dev` / `db push`
if (cliCommand) {
  log("INFO", `Starting schema engine CLI (wasm shim): ${cliCommand}`); // the CLI skips stderr's first line
  try {
    if (cliCommand === "can-connect-to-database") {
      const c = new pg.Client(pgConfig); await c.connect(); await c.end();
    } else if (cliCommand === "create-database") {
      await withMaintenanceClient(async (c) => {
        const { rowCount } = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [pgConfig.database]);
        if (!rowCount) await c.query(`CREATE DATABASE ${quoteIdent(pgConfig.database)}`);
      });
      console.log(`Database '${pgConfig.database}' was successfully created.`);
    } else if (cliCommand === "drop-database") {
      await withMaintenanceClient((c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(pgConfig.database)}`));
    } else throw new Error(`unsupported cli command ${cliCommand}`);
    process.exit(0);
  } catch (e) {
    const code = e.code === "3D000" ? "P1003" : e.code === "ECONNREFUSED" ? "P1001" : "P1000";
    log("ERROR", e.message, { error_code: code });
    process.exit(1);
  }
}

// ---- adapter-pg fixes needed by the wasm engine on PostgreSQL
const REMAP = { 18: 25, 19: 25 }; // "char", name -> text (catalog queries; adapter-pg rejects them)
const CHARACTER = 6; // ColumnTypeEnum.Character: what the engine reads "char" columns (pg_constraint.contype) as
function remapTypes(q) {
  const performIO = q.performIO.bind(q);
  const charColumns = new WeakMap();
  q.performIO = async (query) => {
    const res = await performIO(query);
    const chars = [];
    (res?.fields ?? []).forEach((f, i) => { if (f.dataTypeID === 18) chars.push(i); f.dataTypeID = REMAP[f.dataTypeID] ?? f.dataTypeID; });
    if (chars.length && res?.fields) charColumns.set(res.fields, chars);
    return res;
  };
  const queryRaw = q.queryRaw.bind(q);
  q.queryRaw = async (query) => {
    let fields;
    const performIOOnce = q.performIO;
    q.performIO = async (inner) => { const res = await performIOOnce(inner); fields = res?.fields; return res; };
    try {
      const result = await queryRaw(query);
      for (const i of (fields && charColumns.get(fields)) ?? []) result.columnTypes[i] = CHARACTER;
      return result;
    } finally { q.performIO = performIOOnce; }
  };
  return q;
}
function fixAdapter(a) {
  remapTypes(a);
  const startTransaction = a.startTransaction.bind(a);
  a.startTransaction = async (...args) => remapTypes(await startTransaction(...args));
  // upstream splits scripts on ';' -> breaks $$ bodies and ';' in literals/comments
  a.executeScript = async (script) => { try { await a.client.query(script); } catch (e) { a.onError(e); } };
  return a;
}
class MigratePg extends PrismaPg {
  async connect() { return fixAdapter(await super.connect()); }
  async connectToShadowDb() {
    if (datasource.shadowDatabaseUrl) {
      // explicit shadow db: the wasm engine replays migrations into it without emptying it first
      const shadow = fixAdapter(await new PrismaPg(pgConfigFrom(datasource.shadowDatabaseUrl)).connect());
      const schema = new URL(datasource.shadowDatabaseUrl).searchParams.get("schema") ?? "public";
      await shadow.executeScript(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE; CREATE SCHEMA ${quoteIdent(schema)};`);
      return shadow;
    }
    const admin = await super.connect();
    const database = `prisma_migrate_shadow_db_${globalThis.crypto.randomUUID()}`;
    await admin.executeScript(`CREATE DATABASE "${database}"`);
    const shadow = fixAdapter(await new PrismaPg({ ...pgConfig, database }).connect());
    const dispose = shadow.dispose.bind(shadow);
    shadow.dispose = async () => {
      await dispose(); // close the shadow pool *before* dropping the database
      await admin.executeScript(`DROP DATABASE IF EXISTS "${database}"`);
      await admin.dispose();
    };
    return shadow;
  }
}

// the wasm engine arms 10 s lock-timeout timers it never clears; don't let them hold the process
const setTimeout0 = globalThis.setTimeout;
globalThis.setTimeout = (fn, ms, ...args) => { const t = setTimeout0(fn, ms, ...args); if ((ms ?? 0) >= 10_000) t.unref?.(); return t; };

globalThis.PRISMA_WASM_PANIC_REGISTRY ??= { message: "", set_message(m) { this.message = m; } }; // used by the glue on panic

// ---- load the wasm engine (Node 20 can't `import` .wasm: instantiate by hand)
const bg = await import(path.join(wasmDir, "schema_engine_bg.js"));
const { instance } = await WebAssembly.instantiate(fs.readFileSync(path.join(wasmDir, "schema_engine_bg.wasm")), { "./schema_engine_bg.js": bg });
bg.__wbg_set_wasm(instance.exports);
instance.exports.__wbindgen_start?.();

// Some commands (migrate diff) start the engine without --datamodels; the wasm engine then panics,
// so give it a minimal PostgreSQL datamodel to pick the connector.
const datamodels = datamodelPaths.length
  ? datamodelPaths.map((p) => [p, fs.readFileSync(p, "utf8")])
  : [["schema.prisma", 'datasource db {\n  provider = "postgresql"\n}\n']];
const adapter = bindMigrationAwareSqlAdapterFactory(new MigratePg(pgConfig));
let engine;
try {
  engine = await bg.SchemaEngine.new({ datamodels }, (msg) => process.stderr.write(String(msg) + "\n"), adapter);
} catch (e) {
  log("ERROR", e.message ?? String(e), { error_code: e.code ?? "P1000" });
  process.exit(1);
}

// ---- JSON-RPC loop
const out = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");
let nextOwnId = 1_000_000;
const pendingPrints = new Map();
const queue = [];
let busy = false;

async function handle(req) {
  if (req.id !== undefined && req.method === undefined) { pendingPrints.get(req.id)?.(); pendingPrints.delete(req.id); return; } // ack of our `print`
  try {
    if (!(req.method in engine) || typeof engine[req.method] !== "function") throw Object.assign(new Error(`method ${req.method} not supported by wasm shim`), { code: "P1000" });
    let result;
    try {
      result = await engine[req.method](req.params ?? {});
    } catch (e) {
      // wasm engine bug: `migrate dev` with pending migrations runs devDiagnostic -> applyMigrations ->
      // evaluateDataLoss, and the last fails with "shadow DB must be provided through an external
      // factory". Re-running devDiagnostic (now that the db is up to date) first makes it work.
      if (req.method !== "evaluateDataLoss" || !/shadow DB must be provided through an external factory/.test(e?.message ?? "")) throw e;
      await engine.devDiagnostic({ migrationsList: req.params.migrationsList, filters: req.params.filters });
      result = await engine.evaluateDataLoss(req.params);
    }
    if (req.method === "diff" && result && typeof result.stdout === "string") {
      const id = nextOwnId++;
      await new Promise((resolve) => { pendingPrints.set(id, resolve); out({ jsonrpc: "2.0", id, method: "print", params: { content: result.stdout } }); });
      result = { exitCode: result.exitCode };
    }
    out({ jsonrpc: "2.0", id: req.id, result: result ?? null });
  } catch (e) {
    const errorCode = e.code ?? e.error_code;
    out({ jsonrpc: "2.0", id: req.id, error: { code: 4466, message: "An error happened. Check the data field for details.",
      data: { is_panic: false, message: e.message ?? String(e), meta: e.meta ?? null, error_code: errorCode ?? null } } });
  }
}
async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) await handle(queue.shift());
  busy = false;
}
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  if (msg.id !== undefined && msg.method === undefined) return void handle(msg); // print ack: don't queue
  queue.push(msg); pump();
});
rl.on("close", async () => { while (busy || queue.length) await new Promise((r) => setTimeout0(r, 10)); try { engine.free(); } catch {} process.exit(0); });
