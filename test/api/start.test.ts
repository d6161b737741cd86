/**
 * Several nodes started at the same instant from one checkout (a cold start on one
 * machine): `npm start` builds dist/ at most once, under a lock, and swaps it in whole,
 * so none of them loads a half-written build.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { freePort, ROOT, tempDataDir, waitFor } from "../support/processes";

const STAMP = path.join(ROOT, "dist", ".inputs-hash");

function npmStart(port: number, nodeID: string) {
  const child = spawn("npm", ["start", "--silent"], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), NODEID: nodeID, DATA_DIR: tempDataDir(nodeID), LOGLEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (out += b.toString()));
  return { child, output: () => out };
}

describe("npm start, several nodes at once from one checkout", () => {
  const started: ReturnType<typeof npmStart>[] = [];
  afterAll(() => {
    for (const s of started) {
      try {
        process.kill(-s.child.pid!, "SIGKILL"); // npm and the node it started
      } catch {
        /* gone */
      }
    }
  });

  test("sources changed since the last build: one build, every node starts", async () => {
    // As after an edit: the build on disk no longer matches the sources.
    fs.writeFileSync(STAMP, "stale");
    const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    started.push(...ports.map((port, i) => npmStart(port, `start-${i}`)));
    for (const [i, port] of ports.entries()) {
      await waitFor(
        `node ${i} healthy`,
        async () => {
          if (started[i].child.exitCode !== null) throw new Error(`exited: ${started[i].output()}`);
          return (await fetch(`http://127.0.0.1:${port}/health`)).ok;
        },
        120000,
        200,
      );
    }
    expect(fs.readFileSync(STAMP, "utf8")).toMatch(/^[0-9a-f]{64}$/);
    for (const s of started) expect(s.output()).not.toMatch(/SERVICE_SCHEMA_ERROR|Cannot find module|SyntaxError/);
    expect(fs.readdirSync(ROOT).filter((f) => f.startsWith("dist.") || f === ".build-lock")).toEqual([]);
  }, 180000);
});
