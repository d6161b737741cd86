import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { PeerCertificate } from "tls";
import { nkeys } from "nats";
import { NatsSettingsError, identityCheckFor, natsConnectionOptions, transporterFromEnv, type NatsConnectionOptions } from "../../src/nats-options";
import { describeWithOpenssl, makeTestCertificates, type TestCertificates } from "../support/certificates";

const URL1 = "nats://127.0.0.1:4222";

/** The connection options transporterFromEnv builds (it must build them, not pass the string on). */
function optionsFor(env: NodeJS.ProcessEnv): NatsConnectionOptions {
  const t = transporterFromEnv(env);
  if (t === null || typeof t === "string") throw new Error(`expected connection options, got ${JSON.stringify(t)}`);
  expect(t.type).toBe("NATS");
  return t.options;
}

/** What the authenticator sends nats-server in CONNECT. */
const credentialsSent = (o: NatsConnectionOptions) => o.authenticator?.("nonce");

function refused(env: NodeJS.ProcessEnv): string {
  try {
    transporterFromEnv(env);
  } catch (err) {
    expect(err).toBeInstanceOf(NatsSettingsError);
    return (err as Error).message;
  }
  throw new Error("expected a NatsSettingsError");
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "flowmesh-nats-options-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

describe("TRANSPORTER alone", () => {
  test("no TRANSPORTER, no NATS settings: embedded (null)", () => {
    expect(transporterFromEnv({})).toBeNull();
    expect(transporterFromEnv({ TRANSPORTER: "" })).toBeNull();
  });

  test("the URL string as given, as Moleculer has always taken it", () => {
    expect(transporterFromEnv({ TRANSPORTER: URL1 })).toBe(URL1);
    expect(transporterFromEnv({ TRANSPORTER: "nats://a:4222,nats://b:4222" })).toBe("nats://a:4222,nats://b:4222");
    expect(transporterFromEnv({ TRANSPORTER: "TCP" })).toBe("TCP");
  });

  test("empty NATS settings (docker compose's ${VAR:-}) count as unset", () => {
    expect(transporterFromEnv({ TRANSPORTER: URL1, NATS_USER: "", NATS_PASSWORD: "", NATS_TLS_CA: "" })).toBe(URL1);
  });

  test("NATS settings without TRANSPORTER stop the start (a misspelt TRANSPORTER would run embedded)", () => {
    expect(refused({ NATS_USER: "u", NATS_PASSWORD: "p" })).toMatch(/NATS_USER, NATS_PASSWORD set without TRANSPORTER/);
  });

  test("natsConnectionOptions needs TRANSPORTER", () => {
    expect(() => natsConnectionOptions({})).toThrow(/TRANSPORTER is not set/);
  });
});

describe("servers", () => {
  test("each URL of a comma list becomes host:port", () => {
    const o = optionsFor({ TRANSPORTER: "nats://10.0.0.1:4222, nats://nats-2:4223,nats://nats-3", NATS_TOKEN: "t" });
    expect(o.servers).toEqual(["10.0.0.1:4222", "nats-2:4223", "nats-3"]);
  });

  test("credentials in the URL and in NATS settings: refused, without repeating them", () => {
    const message = refused({ TRANSPORTER: "nats://u:s3cret@127.0.0.1:4222", NATS_TLS_CA: "/x" });
    expect(message).toMatch(/TRANSPORTER carries credentials.*NATS_USER and NATS_PASSWORD/);
    expect(message).not.toContain("s3cret");
  });

  test("a URL that does not parse: refused, without repeating it", () => {
    const message = refused({ TRANSPORTER: "nats://127.0.0.1:4222,://u:s3cret@", NATS_TOKEN: "t" });
    expect(message).toMatch(/server 2 is not a URL/);
    expect(message).not.toContain("s3cret");
  });

  test("another transporter with NATS settings: refused", () => {
    expect(refused({ TRANSPORTER: "tcp://127.0.0.1:6000", NATS_TOKEN: "t" })).toMatch(/nats:\/\/ \(or tls:\/\/\) URLs.*got tcp:/);
  });

  test("a tls:// URL asks for TLS with the system's CAs", () => {
    const o = optionsFor({ TRANSPORTER: "tls://nats.example.com:4222" });
    expect(o.servers).toEqual(["nats.example.com:4222"]);
    expect(o.tls).toEqual({});
    expect(o.authenticator).toBeUndefined();
  });
});

describe("authentication", () => {
  test("user and password, in a closure: not in the options Moleculer lets any node read", () => {
    const o = optionsFor({ TRANSPORTER: URL1, NATS_USER: "flowmesh", NATS_PASSWORD: "pa:ss@w0rd" });
    expect(credentialsSent(o)).toEqual({ user: "flowmesh", pass: "pa:ss@w0rd" });
    expect(o.tls).toBeUndefined();
    expect(JSON.stringify(o)).not.toContain("pa:ss@w0rd");
  });

  test("a token", () => {
    const o = optionsFor({ TRANSPORTER: URL1, NATS_TOKEN: "tok-123" });
    expect(credentialsSent(o)).toEqual({ auth_token: "tok-123" });
    expect(JSON.stringify(o)).not.toContain("tok-123");
  });

  test("a password without a user, a user without a password: refused", () => {
    expect(refused({ TRANSPORTER: URL1, NATS_PASSWORD: "p" })).toBe("NATS_PASSWORD is set without NATS_USER");
    expect(refused({ TRANSPORTER: URL1, NATS_USER: "u" })).toBe("NATS_USER is set without NATS_PASSWORD");
  });

  test("two ways to authenticate: refused", () => {
    expect(refused({ TRANSPORTER: URL1, NATS_USER: "u", NATS_PASSWORD: "p", NATS_TOKEN: "t" })).toMatch(/NATS_USER\/NATS_PASSWORD and NATS_TOKEN are both set/);
    expect(refused({ TRANSPORTER: URL1, NATS_TOKEN: "t", NATS_CREDS: "/x.creds" })).toMatch(/NATS_TOKEN and NATS_CREDS are both set/);
  });

  test("a .creds file: the user JWT and a signature by its NKEY seed", () => {
    const user = nkeys.createUser();
    const jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln"; // the server checks it, not the client
    const creds = file(
      "user.creds",
      `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n` +
        `************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n` +
        `-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`,
    );
    const sent = credentialsSent(optionsFor({ TRANSPORTER: URL1, NATS_CREDS: creds })) as { jwt: string; nkey: string; sig: string };
    expect(sent.jwt).toBe(jwt);
    expect(sent.nkey).toBe(user.getPublicKey());
    expect(user.verify(new TextEncoder().encode("nonce"), Buffer.from(sent.sig, "base64url"))).toBe(true);
  });

  test("a .creds file that is not one, or cannot be read: refused, naming the file", () => {
    const bad = file("bad.creds", "not a creds file\n");
    expect(refused({ TRANSPORTER: URL1, NATS_CREDS: bad })).toMatch(new RegExp(`^NATS_CREDS: ${bad} is not a NATS credentials file`));
    const missing = path.join(dir, "missing.creds");
    expect(refused({ TRANSPORTER: URL1, NATS_CREDS: missing })).toBe(`NATS_CREDS: cannot read ${missing} (ENOENT)`);
  });
});

describe("TLS settings that need no certificate", () => {
  test("a certificate without its key, a key without its certificate: refused", () => {
    expect(refused({ TRANSPORTER: URL1, NATS_TLS_CERT: "/c.pem" })).toMatch(/^NATS_TLS_CERT is set without NATS_TLS_KEY/);
    expect(refused({ TRANSPORTER: URL1, NATS_TLS_KEY: "/k.pem" })).toMatch(/^NATS_TLS_KEY is set without NATS_TLS_CERT/);
  });

  test("a CA file that is missing or not a certificate: refused", () => {
    const missing = path.join(dir, "missing-ca.pem");
    expect(refused({ TRANSPORTER: URL1, NATS_TLS_CA: missing })).toBe(`NATS_TLS_CA: cannot read ${missing} (ENOENT)`);
    const garbage = file("garbage.pem", "hello\n");
    expect(refused({ TRANSPORTER: URL1, NATS_TLS_CA: garbage })).toMatch(new RegExp(`^NATS_TLS_CA: ${garbage} is not a PEM certificate`));
  });
});

describe("server identity for servers given by IP address (nats.js checks them as 'localhost')", () => {
  // The fields tls.checkServerIdentity reads.
  const certFor127 = { subject: { CN: "127.0.0.1" }, subjectaltname: "IP Address:127.0.0.1" } as unknown as PeerCertificate;
  const certForName = { subject: { CN: "nats.example.com" }, subjectaltname: "DNS:nats.example.com" } as unknown as PeerCertificate;

  const mismatch = expect.objectContaining({ code: "ERR_TLS_CERT_ALTNAME_INVALID" });

  test("a certificate for a listed address passes; one for another address or name does not", () => {
    const check = identityCheckFor(["127.0.0.1"]);
    expect(check("localhost", certFor127)).toBeUndefined();
    expect(check("localhost", certForName)).toEqual(mismatch);
    expect(identityCheckFor(["10.0.0.9"])("localhost", certFor127)).toEqual(mismatch);
  });

  test("names are checked as usual", () => {
    expect(identityCheckFor(["127.0.0.1"])("nats.example.com", certForName)).toBeUndefined();
  });

  test("only servers given by IP address get the check", () => {
    expect(optionsFor({ TRANSPORTER: "tls://nats.example.com:4222" }).tls?.checkServerIdentity).toBeUndefined();
    expect(optionsFor({ TRANSPORTER: "tls://127.0.0.1:4222,tls://[::1]:4222" }).tls?.checkServerIdentity).toBeInstanceOf(Function);
  });
});

describeWithOpenssl("TLS settings with certificate files", () => {
  let certs: TestCertificates;
  beforeAll(() => {
    certs = makeTestCertificates();
  });
  afterAll(() => certs && fs.rmSync(certs.dir, { recursive: true, force: true }));

  test("a CA: the client trusts it (files the nats client reads at each connect)", () => {
    const o = optionsFor({ TRANSPORTER: URL1, NATS_TLS_CA: certs.caCert });
    expect(o.tls).toMatchObject({ caFile: certs.caCert });
    expect(o.tls?.certFile).toBeUndefined();
  });

  test("a CA, a client certificate and its key, with a user and password", () => {
    const o = optionsFor({
      TRANSPORTER: URL1,
      NATS_USER: "u",
      NATS_PASSWORD: "p",
      NATS_TLS_CA: certs.caCert,
      NATS_TLS_CERT: certs.clientCert,
      NATS_TLS_KEY: certs.clientKey,
    });
    expect(o.tls).toMatchObject({ caFile: certs.caCert, certFile: certs.clientCert, keyFile: certs.clientKey });
    expect(credentialsSent(o)).toEqual({ user: "u", pass: "p" });
  });

  test("a key that is not the certificate's: refused", () => {
    const message = refused({ TRANSPORTER: URL1, NATS_TLS_CERT: certs.clientCert, NATS_TLS_KEY: certs.serverKey });
    expect(message).toMatch(/^NATS_TLS_CERT\/NATS_TLS_KEY: .* are not a PEM certificate and its key: .*key values mismatch/);
  });

  test("a private key given as the CA: refused", () => {
    expect(refused({ TRANSPORTER: URL1, NATS_TLS_CA: certs.caKey })).toMatch(/^NATS_TLS_CA: .* is not a PEM certificate/);
  });
});
