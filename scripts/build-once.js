#!/usr/bin/env node
/**
 * `npm start`'s build step, safe for many nodes started at the same instant from one
 * checkout (a cold start of a cluster on one machine):
 * - nothing is built when dist/ was built from the same sources (a hash of their
 *   contents, kept in dist/.inputs-hash): nodes started together do not rebuild at all
 *   once one build has happened;
 * - otherwise one process builds, under a lock (an exclusive mkdir), into a directory of
 *   its own, and swaps it in by rename; the others wait for the lock, find the hash
 *   current, and start. No process ever loads a dist/ that another is writing.
 */
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");
const stampFile = path.join(dist, ".inputs-hash");
const lockDir = path.join(root, ".build-lock");
const INPUTS = ["moleculer.config.ts", "tsconfig.json", "tsconfig.build.json", "package-lock.json", "services", "mixins", "src", "bin", "bench"];
/** A lock older than this was left by a build that died. */
const STALE_LOCK_MS = 5 * 60 * 1000;

function files(entry) {
  const full = path.join(root, entry);
  if (!fs.existsSync(full)) return [];
  if (!fs.statSync(full).isDirectory()) return [entry];
  return fs
    .readdirSync(full)
    .sort()
    .flatMap((name) => files(path.join(entry, name)));
}

function inputsHash() {
  const hash = crypto.createHash("sha256");
  for (const file of INPUTS.flatMap(files)) {
    if (file.startsWith(path.join("bench", "results"))) continue;
    hash.update(file).update("\0").update(fs.readFileSync(path.join(root, file))).update("\0");
  }
  return hash.digest("hex");
}

const built = () => {
  try {
    return fs.readFileSync(stampFile, "utf8");
  } catch {
    return null;
  }
};
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

const want = inputsHash();
if (built() === want) process.exit(0);

for (;;) {
  try {
    fs.mkdirSync(lockDir);
    break;
  } catch (err) {
    if (err.code !== "EEXIST") throw err;
    try {
      if (Date.now() - fs.statSync(lockDir).mtimeMs > STALE_LOCK_MS) fs.rmSync(lockDir, { recursive: true, force: true });
    } catch {
      /* released meanwhile */
    }
    sleep(200);
    if (built() === want) process.exit(0);
  }
}
try {
  if (built() !== want) {
    const fresh = path.join(root, `dist.build-${process.pid}`);
    const old = path.join(root, `dist.old-${process.pid}`);
    fs.rmSync(fresh, { recursive: true, force: true });
    try {
      execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json", "--outDir", fresh], { cwd: root, stdio: "inherit" });
    } catch (err) {
      fs.rmSync(fresh, { recursive: true, force: true }); // a failed build is never swapped in
      throw err;
    }
    fs.writeFileSync(path.join(fresh, ".inputs-hash"), want);
    if (fs.existsSync(dist)) fs.renameSync(dist, old);
    fs.renameSync(fresh, dist);
    fs.rmSync(old, { recursive: true, force: true });
  }
} finally {
  fs.rmSync(lockDir, { recursive: true, force: true });
}
