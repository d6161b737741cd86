/**
 * Helpers for the gateway's security tests (test/api/security, gzip, backpressure):
 * a tokens file in a temporary directory, and a node started only to see whether it
 * refuses to start (startNode waits for /health, which such a node never serves).
 */
import { spawn } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { freePort, ROOT, tempDataDir } from "./processes";

export const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex");

const dirs = new Set<string>();
process.on("exit", () => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A tokens file holding `lines` (removed when the test process exits). */
export function tokensFile(lines: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flowmesh-tokens-"));
  dirs.add(dir);
  const file = path.join(dir, "tokens");
  fs.writeFileSync(file, lines.join("\n") + "\n", { mode: 0o600 });
  return file;
}

/** `Authorization: Bearer <token>`, or no header for null. */
export const bearer = (token: string | null): Record<string, string> => (token === null ? {} : { authorization: `Bearer ${token}` });

/**
 * Starts a node as startNode would and waits up to `timeoutMs` for it to exit: its exit
 * code and output, or `code: null` if it was still running (then it is killed).
 */
export async function startExpectingExit(env: Record<string, string>, timeoutMs = 30000): Promise<{ code: number | null; output: string }> {
  const port = await freePort();
  const nodeID = env.NODEID ?? `exit-${port}`;
  const child = spawn(process.execPath, [path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js"), "--config", "dist/moleculer.config.js"], {
    cwd: ROOT,
    env: { ...process.env, SERVICEDIR: "dist/services", LOGLEVEL: "warn", NODEID: nodeID, DATA_DIR: tempDataDir(nodeID), PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr.on("data", (b: Buffer) => (output += b.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(null);
    }, timeoutMs);
    child.on("exit", (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  return { code, output };
}
