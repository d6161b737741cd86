/**
 * A real headless browser for tests: Debian's chromium (`apt-get install -y chromium`),
 * driven by playwright-core. Playwright's own browser downloads are never used.
 */
import { spawnSync } from "child_process";
import { existsSync } from "fs";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM_INSTALL = "apt-get install -y chromium";

/** CHROMIUM_PATH, else chromium (or chromium-browser) on the PATH, else /usr/bin/chromium; null when none. */
export function chromiumPath(): string | null {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  for (const name of ["chromium", "chromium-browser"]) {
    const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return existsSync("/usr/bin/chromium") ? "/usr/bin/chromium" : null;
}

export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(`chromium not found: ${CHROMIUM_INSTALL}`);
  return chromium.launch({
    executablePath,
    headless: true,
    // --no-sandbox: CI and containers often run as root, where chromium's sandbox refuses to start.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    timeout: 30000,
  });
}

/** describe, or describe.skip with the install command when chromium is missing (a failure under CI). */
export function describeWithChromium(name: string, fn: () => void): void {
  if (chromiumPath() !== null) return describe(name, fn);
  if (process.env.CI) {
    describe(name, () => {
      test("chromium is installed", () => {
        throw new Error(`chromium not found: ${CHROMIUM_INSTALL}`);
      });
    });
    return;
  }
  // eslint-disable-next-line no-console
  console.warn(`Skipping "${name}": chromium not found (${CHROMIUM_INSTALL})`);
  describe.skip(name, fn);
}
