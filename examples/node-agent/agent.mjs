// A ledgerbus agent in JavaScript, written from docs/PROTOCOL.md alone (section numbers refer to it).
//
//   LEDGERBUS_NATS_URL=nats://127.0.0.1:4222 node agent.mjs
//
// Agent type `jstext` (LEDGERBUS_AGENT_TYPE overrides it), two capabilities:
//   text.shout  {text}  -> {text: TEXT IN CAPITALS, length}
//   text.count  {text}  -> {words, characters}
// Prints "ready <type> <instance>" on stdout once its consumer exists and it is in the directory;
// SIGINT/SIGTERM stop it cleanly (in-flight requests finish, the directory entry is deleted).
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";

import Ajv2020 from "ajv/dist/2020.js";
import {
  AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, connect, headers, millis, nanos,
} from "nats";

const NATS_URL = process.env.LEDGERBUS_NATS_URL || "nats://127.0.0.1:4222";
const PREFIX = process.env.LEDGERBUS_PREFIX || "lb";
const TYPE = process.env.LEDGERBUS_AGENT_TYPE || "jstext";
const CONCURRENCY = Number(process.env.LEDGERBUS_CONCURRENCY || 8);
const SCHEMAS = process.env.LEDGERBUS_SCHEMAS || new URL("../../schemas/", import.meta.url).pathname;

// -- §2 names ---------------------------------------------------------------------------------------
const upper = PREFIX.toUpperCase();
const STREAM = PREFIX === "lb" ? "LEDGER" : `LEDGER_${upper.replaceAll("-", "_")}`;
const AGENTS_BUCKET = PREFIX === "lb" ? "LB_AGENTS" : `LB_AGENTS_${upper}`;
const CONSUMER = `agent-${TYPE}`;
const DIRECTORY_TTL = 10_000;
const MAX_BYTES = 512 * 1024;
const MAX_DEPTH = 32;
const ADDRESS = /^[a-z0-9_-]{1,64}$/;
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;
const CAPABILITY = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;

const INSTANCE = `${TYPE}-${hostname().replace(/[^A-Za-z0-9_-]/g, "-")}-${process.pid}-${randomBytes(3).toString("hex")}`;

// -- capabilities: payload schemas (announced in the directory, §9) and handlers ------------------------
const TEXT = { type: "string", minLength: 1, maxLength: 10_000, pattern: "\\S" };
const CAPABILITIES = {
  "text.shout": {
    description: "the text in capitals",
    input: {
      type: "object", additionalProperties: false, required: ["text"],
      properties: { text: TEXT },
    },
    output: {
      type: "object", additionalProperties: false, required: ["text", "length"],
      properties: { text: { type: "string" }, length: { type: "integer", minimum: 0 } },
    },
    async handler(input, ctx) {
      await ctx.progress({ stage: "shouting" });
      const text = input.text.toUpperCase();
      return { text, length: text.length };
    },
  },
  "text.count": {
    description: "words and characters of a text",
    input: {
      type: "object", additionalProperties: false, required: ["text"],
      properties: { text: TEXT },
    },
    output: {
      type: "object", additionalProperties: false, required: ["words", "characters"],
      properties: { words: { type: "integer", minimum: 0 }, characters: { type: "integer", minimum: 0 } },
    },
    async handler(input) {
      return { words: input.text.split(/\s+/).filter(Boolean).length, characters: [...input.text].length };
    },
  },
};

const ajv = new Ajv2020({ allErrors: false });
const envelopeSchema = JSON.parse(readFileSync(`${SCHEMAS}/envelope.schema.json`, "utf8"));
const validEnvelope = ajv.compile(envelopeSchema);
for (const cap of Object.values(CAPABILITIES)) {
  cap.validInput = ajv.compile(cap.input);
  cap.validOutput = ajv.compile(cap.output);
}

// -- helpers ------------------------------------------------------------------------------------------
const log = (...args) => console.error(`[${TYPE}]`, ...args);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

class Refusal extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/** UUIDv7 (RFC 9562): 48 bits of unix ms, then random bits, version 7, variant 10. */
function uuid7() {
  const b = randomBytes(16);
  const ms = BigInt(Date.now());
  for (let i = 0; i < 6; i++) b[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** True when JSON text nests arrays/objects deeper than `max` (brackets inside strings do not count). */
function tooDeep(text, max) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      if (++depth > max) return true;
    } else if (c === "]" || c === "}") depth--;
  }
  return false;
}

/** The JSONPath of the first Ajv error, under `$.payload` (§6 step 6). */
function errorPath(err) {
  const parts = err.instancePath.split("/").slice(1).map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));
  const extra = err.params?.missingProperty ?? err.params?.additionalProperty;
  if (extra !== undefined) parts.push(extra);
  return "$.payload" + parts.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("");
}

// -- §4 decoding --------------------------------------------------------------------------------------
function decode(data) {
  if (data.length > MAX_BYTES) {
    throw new Refusal("PAYLOAD_TOO_LARGE", `message is ${data.length} bytes; the limit is ${MAX_BYTES}`,
      { size: data.length, limit: MAX_BYTES });
  }
  let text;
  try {
    text = dec.decode(data);
  } catch {
    throw new Refusal("INVALID_MESSAGE", "message is not UTF-8");
  }
  if (tooDeep(text, MAX_DEPTH)) {
    throw new Refusal("PAYLOAD_TOO_DEEP", `message nests deeper than ${MAX_DEPTH} levels`, { limit: MAX_DEPTH });
  }
  let env;
  try {
    env = JSON.parse(text);
  } catch (err) {
    throw new Refusal("INVALID_MESSAGE", `malformed JSON: ${err.message}`);
  }
  if (!validEnvelope(env)) {
    const e = validEnvelope.errors[0];
    const field = e.params?.missingProperty ?? e.params?.additionalProperty;
    const path = "$" + e.instancePath.replaceAll("/", ".") + (field !== undefined ? `.${field}` : "");
    throw new Refusal("INVALID_MESSAGE", `invalid envelope: ${e.message} - at \`${path}\``, { path });
  }
  return env;
}

// -- §7 answers ---------------------------------------------------------------------------------------
let js;

function answer(req, action, { payload = {}, error = null } = {}) {
  return {
    id: uuid7(),
    conversationId: req.conversationId,
    taskId: req.taskId,
    causationId: req.id,
    sender: TYPE,
    recipient: req.replyTo ?? req.sender,
    replyTo: null,
    action,
    capability: req.capability,
    payload,
    attempt: req.attempt ?? 1,
    deadline: req.deadline ?? null,
    idempotencyKey: req.idempotencyKey ?? req.taskId,
    timestamp: Date.now(),
    error,
    traceparent: req.traceparent ?? null,
    schemaVersion: 1,
  };
}

async function publish(env) {
  if (!validEnvelope(env)) throw new Error(`bug: invalid answer ${JSON.stringify(validEnvelope.errors)}`);
  const h = headers();
  h.set("Lb-Sender", env.sender);
  h.set("Lb-Task", env.taskId);
  if (env.traceparent) h.set("traceparent", env.traceparent);
  const subject = `${PREFIX}.${env.recipient}.${env.action}.${env.conversationId}`;
  // msgID sets Nats-Msg-Id = the envelope id: JetStream deduplicates a re-sent answer.
  return js.publish(subject, enc.encode(JSON.stringify(env)), { msgID: env.id, headers: h });
}

function errorInfo(code, message, { retryable = false, details = {} } = {}) {
  return { code, message, retryable, details };
}

// -- §6 one request -----------------------------------------------------------------------------------
let ackWait = 30_000;
let handled = 0;
const inflight = new Set();

/** An ERROR for a message that did not decode, addressed from what can be salvaged (§6 step 1). */
async function rejectRaw(m, refusal) {
  let body = {};
  try {
    const parsed = JSON.parse(dec.decode(m.data));
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) body = parsed;
  } catch { /* nothing to salvage */ }
  const str = (v, re) => (typeof v === "string" && re.test(v) ? v : undefined);
  const subjectConv = m.subject.split(".")[3];
  const id = uuid7();
  const env = {
    id,
    conversationId: str(body.conversationId, TOKEN) ?? str(subjectConv, TOKEN) ?? "unknown",
    taskId: str(body.taskId, TOKEN) ?? id,
    causationId: str(body.id, TOKEN) ?? null,
    sender: TYPE,
    recipient: str(body.replyTo, ADDRESS) ?? str(body.sender, ADDRESS) ?? str(m.headers?.get("Lb-Sender"), ADDRESS)
      ?? "unknown",
    replyTo: null,
    action: "ERROR",
    capability: str(body.capability, CAPABILITY) ?? "unknown",
    payload: {},
    attempt: 1,
    deadline: null,
    idempotencyKey: null,
    timestamp: Date.now(),
    error: errorInfo(refusal.code, refusal.message, { details: refusal.details }),
    traceparent: null,
    schemaVersion: 1,
  };
  await publish(env);
  m.term();
}

async function refuse(req, m, code, message, details = {}) {
  await publish(answer(req, "ERROR", { error: errorInfo(code, message, { details }) }));
  await m.ackAck();
}

async function handle(m) {
  let req;
  try {
    req = decode(m.data);
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    await rejectRaw(m, err);
    return;
  }
  const cap = CAPABILITIES[req.capability];
  if (req.action !== "REQUEST" || req.recipient !== TYPE) {
    return refuse(req, m, "INVALID_MESSAGE", `${TYPE} takes REQUESTs addressed to it, not ${req.action} for ${req.recipient}`);
  }
  if (cap === undefined) {
    return refuse(req, m, "UNKNOWN_CAPABILITY",
      `agent '${TYPE}' has no capability '${req.capability}'; it offers ${Object.keys(CAPABILITIES).join(", ")}`);
  }
  if (req.deadline != null && Date.now() > req.deadline) {
    return refuse(req, m, "DEADLINE_EXCEEDED", `deadline passed ${Date.now() - req.deadline} ms before the request was taken`);
  }
  const payload = req.payload ?? {};
  if (!cap.validInput(payload)) {
    const e = cap.validInput.errors[0];
    const path = errorPath(e);
    return refuse(req, m, "INVALID_MESSAGE", `payload invalid: ${e.message} - at \`${path}\``, { path });
  }

  await publish(answer(req, "ACK", { payload: { instance: INSTANCE } }));  // receipt before work
  const beat = setInterval(() => m.working(), Math.max(ackWait / 3, 500));
  let reply;
  try {
    const ctx = {
      request: req,
      progress: async (p) => {
        await publish(answer(req, "PROGRESS", { payload: p }));
        m.working();
      },
    };
    const out = await cap.handler(payload, ctx);
    if (!cap.validOutput(out)) {
      const e = cap.validOutput.errors[0];
      reply = answer(req, "ERROR", {
        error: errorInfo("INVALID_OUTPUT", `handler returned an invalid result: ${e.message}`, { details: { path: errorPath(e) } }),
      });
    } else {
      reply = answer(req, "RESPONSE", { payload: out });
    }
  } catch (err) {
    reply = answer(req, "ERROR", {
      error: errorInfo(typeof err.code === "string" ? err.code : "HANDLER_ERROR", `${err.name}: ${err.message}`, { retryable: err.retryable === true }),
    });
  } finally {
    clearInterval(beat);
  }
  await publish(reply);  // resolves on the PubAck: the answer is in the ledger
  await m.ackAck();      // only now may JetStream forget the request
  handled++;
}

// -- §5 stream and consumer, §9 directory ---------------------------------------------------------------
async function ensureStream(jsm) {
  try {
    await jsm.streams.info(STREAM);
  } catch (err) {
    if (!/stream not found/i.test(err.message)) throw err;
    await jsm.streams.add({
      name: STREAM, subjects: [`${PREFIX}.>`], retention: RetentionPolicy.Limits, storage: StorageType.File,
      discard: DiscardPolicy.Old, duplicate_window: nanos(120_000), num_replicas: 1,
      max_age: 0, max_bytes: -1, max_msg_size: -1,
    });
  }
}

async function ensureConsumer(jsm) {
  const config = {
    durable_name: CONSUMER, name: CONSUMER, filter_subject: `${PREFIX}.${TYPE}.REQUEST.>`,
    ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.New, ack_wait: nanos(30_000),
    max_deliver: 5, max_ack_pending: 1000,
  };
  try {
    const info = await jsm.consumers.add(STREAM, config);
    return millis(info.config.ack_wait);
  } catch (err) {
    // It exists with other settings: keep it (it holds the type's pending requests) and use it as it is.
    const info = await jsm.consumers.info(STREAM, CONSUMER).catch(() => { throw err; });
    log(`consumer ${CONSUMER} exists with other settings (${err.message}); using it as it is`);
    return millis(info.config.ack_wait);
  }
}

function entry(startedAt) {
  return {
    agent: TYPE,
    instance: INSTANCE,
    capabilities: Object.entries(CAPABILITIES).map(([name, c]) => ({
      name, version: 1, description: c.description, inputSchema: c.input, outputSchema: c.output,
    })),
    startedAt,
    seenAt: Date.now(),
    handled,
    inflight: inflight.size,
    concurrency: CONCURRENCY,
  };
}

// -- main -----------------------------------------------------------------------------------------------
async function main() {
  const nc = await connect({ servers: NATS_URL, name: INSTANCE, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  await ensureStream(jsm);
  ackWait = await ensureConsumer(jsm);
  const consumer = await js.consumers.get(STREAM, CONSUMER);

  const kv = await js.views.kv(AGENTS_BUCKET, { history: 1, ttl: DIRECTORY_TTL });
  const key = `${TYPE}.${INSTANCE}`;
  const startedAt = Date.now();
  const announce = () => kv.put(key, enc.encode(JSON.stringify(entry(startedAt))));
  await announce();  // after the consumer exists: a live entry means requests will be delivered
  const heartbeat = setInterval(() => announce().catch((err) => log(`announce failed: ${err.message}`)),
    DIRECTORY_TTL / 3);

  let stopping = false;
  const stopped = new Promise((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => { stopping = true; resolve(); });
  });
  console.log(`ready ${TYPE} ${INSTANCE}`);

  const loop = (async () => {
    while (!stopping) {
      const free = CONCURRENCY - inflight.size;
      if (free <= 0) {
        await Promise.race([...inflight, stopped]);
        continue;
      }
      let batch;
      try {
        batch = await consumer.fetch({ max_messages: free, expires: 1000 });
      } catch (err) {
        log(`fetch failed: ${err.message}`);
        await sleep(200);
        continue;
      }
      for await (const m of batch) {
        const task = handle(m).catch((err) => log(`failed handling ${m.subject}: ${err.stack ?? err}`));
        inflight.add(task);
        task.finally(() => inflight.delete(task));
      }
    }
  })();

  await stopped;
  await loop;
  await Promise.race([Promise.allSettled([...inflight]), sleep(10_000)]);
  clearInterval(heartbeat);
  // A delete marker: a purge is a rollup, which ledgerbus's buckets refuse.
  await kv.delete(key).catch((err) => log(`withdraw failed: ${err.message}`));
  await nc.drain();
}

main().then(() => process.exit(0), (err) => {
  log(err.stack ?? String(err));
  process.exit(1);
});
