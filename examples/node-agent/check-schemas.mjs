// Compiles every *.schema.json in a folder with Ajv in its default strict mode (JSON Schema 2020-12).
// Usage: node check-schemas.mjs ../../schemas
// Exit 0 when every schema compiles with no error and no strict-mode warning; 1 otherwise, one line per problem.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node check-schemas.mjs SCHEMA_DIR");
  process.exit(2);
}
let files;
try {
  files = readdirSync(dir).filter((f) => f.endsWith(".schema.json")).sort();
} catch (err) {
  console.error(`cannot read ${dir}: ${err.message}`);
  process.exit(2);
}
if (files.length === 0) {
  console.error(`no *.schema.json in ${dir}`);
  process.exit(1);
}

const problems = [];
let current = "";
// Ajv's defaults, except that what strict mode would only log (strictTypes, strictTuples) is kept, to fail on it.
const logger = {
  log: () => {},
  warn: (...args) => problems.push(`${current}: warning: ${args.join(" ")}`),
  error: (...args) => problems.push(`${current}: error: ${args.join(" ")}`),
};
const ajv = new Ajv2020({ logger });
for (const file of files) {
  current = file;
  let doc;
  try {
    doc = JSON.parse(readFileSync(join(dir, file), "utf8"));
  } catch (err) {
    problems.push(`${file}: not JSON: ${err.message}`);
    continue;
  }
  try {
    ajv.compile(doc);
  } catch (err) {
    problems.push(`${file}: ${err.message}`);
  }
}
for (const p of problems) console.error(p);
if (problems.length) process.exit(1);
console.log(`${files.length} schemas compile in Ajv strict mode`);
