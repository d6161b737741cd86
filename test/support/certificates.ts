/**
 * Certificates for TLS tests, made with openssl in a temporary directory: a CA, a server
 * certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1 only) and a client certificate,
 * both signed by the CA. EC P-256 keys: quick to generate.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export interface TestCertificates {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export function opensslPath(): string | null {
  const r = spawnSync("sh", ["-c", "command -v openssl"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

const NEW_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** A key and a certificate signed by the CA in `dir`, with the given extensions. */
function signed(dir: string, name: string, subject: string, extensions: string[], serial: number): void {
  openssl(dir, ["req", ...NEW_EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject]);
  fs.writeFileSync(path.join(dir, `${name}.ext`), extensions.join("\n") + "\n");
  openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", String(serial), "-days", "2", "-out", `${name}.pem`, "-extfile", `${name}.ext`]);
}

/** A fresh CA, server and client certificate (the caller removes `dir`). */
export function makeTestCertificates(): TestCertificates {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flowmesh-tls-"));
  openssl(dir, [
    "req", "-x509", ...NEW_EC_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Flowmesh test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]); // prettier-ignore
  signed(dir, "server", "/CN=127.0.0.1", ["subjectAltName=IP:127.0.0.1", "extendedKeyUsage=serverAuth"], 2);
  signed(dir, "client", "/CN=flowmesh-node", ["extendedKeyUsage=clientAuth"], 3);
  const at = (file: string) => path.join(dir, file);
  return {
    dir,
    caCert: at("ca.pem"),
    caKey: at("ca.key"),
    serverCert: at("server.pem"),
    serverKey: at("server.key"),
    clientCert: at("client.pem"),
    clientKey: at("client.key"),
  };
}

/** describe, or describe.skip with the install command when openssl is missing (a failure under CI). */
export function describeWithOpenssl(name: string, fn: () => void): void {
  if (opensslPath() !== null) return describe(name, fn);
  if (process.env.CI) {
    describe(name, () => {
      test("openssl is installed", () => {
        throw new Error("openssl not found: apt-get install -y openssl");
      });
    });
    return;
  }
  // eslint-disable-next-line no-console
  console.warn(`Skipping "${name}": openssl not found (apt-get install -y openssl)`);
  describe.skip(name, fn);
}
