/**
 * How a process connects to NATS, from the environment: TRANSPORTER plus optional
 * credentials and TLS. Used by every node (moleculer.config.ts) and by broker callers
 * (bin/admin.ts).
 *
 *   TRANSPORTER    nats://host:4222[,nats://host2:4222]   (tls://host:4222 asks for TLS)
 *   NATS_USER + NATS_PASSWORD, or NATS_TOKEN, or NATS_CREDS (a .creds file): at most one
 *   NATS_TLS_CA    CA certificate(s) that sign the server's certificate (PEM file)
 *   NATS_TLS_CERT + NATS_TLS_KEY   a client certificate and its key (PEM files)
 *
 * Every mistake is reported when the process starts, naming the variable: found at
 * connect time instead, it is one more "Connection is failed" line that Moleculer
 * repeats every 5 seconds while the node never becomes ready.
 */
import { X509Certificate } from "crypto";
import * as fs from "fs";
import { isIP } from "net";
import * as tls from "tls";
import { credsAuthenticator, tokenAuthenticator, usernamePasswordAuthenticator, type Authenticator } from "nats";

/** The settings that only mean something with TRANSPORTER=nats://... */
export const NATS_SETTINGS = ["NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS", "NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"] as const;

/** The nats client's `tls` option (files are read by the client on every (re)connect). */
export interface NatsTlsOptions {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  checkServerIdentity?: (host: string, cert: tls.PeerCertificate) => Error | undefined;
}

/** What Moleculer's NATS transporter passes to the nats client's connect(). */
export interface NatsConnectionOptions {
  /** host:port of each server in TRANSPORTER. */
  servers: string[];
  /**
   * The credentials, inside a closure rather than as `user`/`pass`/`token` fields:
   * broker options are readable by any node of the namespace (Moleculer's `$node.options`).
   */
  authenticator?: Authenticator;
  tls?: NatsTlsOptions;
}

/** Moleculer's `transporter` broker option. */
export type TransporterOption = string | { type: "NATS"; options: NatsConnectionOptions } | null;

export class NatsSettingsError extends Error {
  override name = "NatsSettingsError";
}

/** An unset or empty variable (docker compose passes `${VAR:-}` as "") is not given. */
function setting(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}

/**
 * The transporter option for TRANSPORTER and the NATS_* settings: null (embedded) without
 * TRANSPORTER, the URL string as given when no NATS_* setting is used (as Moleculer has
 * always taken it), connection options otherwise.
 */
export function transporterFromEnv(env: NodeJS.ProcessEnv): TransporterOption {
  const transporter = setting(env, "TRANSPORTER");
  const given = NATS_SETTINGS.filter((name) => setting(env, name) !== undefined);
  if (transporter === undefined) {
    // Most likely a misspelt TRANSPORTER: starting embedded instead would hide it.
    if (given.length > 0) throw new NatsSettingsError(`${given.join(", ")} set without TRANSPORTER: set TRANSPORTER=nats://host:4222 to join a cluster, or unset ${given.join(", ")}`);
    return null;
  }
  if (given.length === 0 && !/^\s*tls:\/\//i.test(transporter)) return transporter;
  return { type: "NATS", options: natsConnectionOptions(env) };
}

/** Connection options for the nats client from TRANSPORTER and the NATS_* settings. */
export function natsConnectionOptions(env: NodeJS.ProcessEnv): NatsConnectionOptions {
  const transporter = setting(env, "TRANSPORTER");
  if (transporter === undefined) throw new NatsSettingsError("TRANSPORTER is not set (nats://host:4222)");
  const servers = parseServers(transporter);
  const options: NatsConnectionOptions = { servers: servers.map((url) => url.host) };
  const authenticator = authenticatorFrom(env);
  if (authenticator !== undefined) options.authenticator = authenticator;
  const tlsOptions = tlsFrom(env, servers);
  if (tlsOptions !== undefined) options.tls = tlsOptions;
  return options;
}

function parseServers(transporter: string): URL[] {
  return transporter.split(",").map((entry, i) => {
    let url: URL;
    try {
      url = new URL(entry.trim());
    } catch {
      // The entry itself is not repeated: it may hold a password.
      throw new NatsSettingsError(`TRANSPORTER: server ${i + 1} is not a URL (expected nats://host:4222)`);
    }
    if (url.protocol !== "nats:" && url.protocol !== "tls:") {
      throw new NatsSettingsError(`TRANSPORTER must list nats:// (or tls://) URLs with NATS_* settings, got ${url.protocol}//`);
    }
    // One place for credentials: in the URL as well they would be ambiguous, and echoed in logs.
    if (url.username !== "" || url.password !== "") {
      throw new NatsSettingsError("TRANSPORTER carries credentials (nats://user:pass@host): give them as NATS_USER and NATS_PASSWORD (or NATS_TOKEN) instead");
    }
    return url;
  });
}

function authenticatorFrom(env: NodeJS.ProcessEnv): Authenticator | undefined {
  const user = setting(env, "NATS_USER");
  const password = setting(env, "NATS_PASSWORD");
  const token = setting(env, "NATS_TOKEN");
  const credsFile = setting(env, "NATS_CREDS");
  const ways = [
    user !== undefined || password !== undefined ? "NATS_USER/NATS_PASSWORD" : null,
    token !== undefined ? "NATS_TOKEN" : null,
    credsFile !== undefined ? "NATS_CREDS" : null,
  ].filter((w) => w !== null);
  if (ways.length > 1) throw new NatsSettingsError(`${ways.join(" and ")} are both set: a NATS connection authenticates one way, keep one`);

  if (password !== undefined && user === undefined) throw new NatsSettingsError("NATS_PASSWORD is set without NATS_USER");
  if (user !== undefined && password === undefined) throw new NatsSettingsError("NATS_USER is set without NATS_PASSWORD");
  if (user !== undefined && password !== undefined) return usernamePasswordAuthenticator(user, password);
  if (token !== undefined) return tokenAuthenticator(token);
  if (credsFile !== undefined) {
    const authenticator = credsAuthenticator(readSettingFile("NATS_CREDS", credsFile));
    try {
      // Parses the file and signs a test nonce with its seed, as connecting will.
      authenticator("flowmesh-check");
    } catch (err) {
      throw new NatsSettingsError(`NATS_CREDS: ${credsFile} is not a NATS credentials file (a user JWT and an NKEY seed): ${(err as Error).message}`);
    }
    return authenticator;
  }
  return undefined;
}

function tlsFrom(env: NodeJS.ProcessEnv, servers: URL[]): NatsTlsOptions | undefined {
  const caFile = setting(env, "NATS_TLS_CA");
  const certFile = setting(env, "NATS_TLS_CERT");
  const keyFile = setting(env, "NATS_TLS_KEY");
  const tlsUrl = servers.some((url) => url.protocol === "tls:");
  if (caFile === undefined && certFile === undefined && keyFile === undefined && !tlsUrl) return undefined;

  if (certFile !== undefined && keyFile === undefined) throw new NatsSettingsError("NATS_TLS_CERT is set without NATS_TLS_KEY (the client certificate's private key)");
  if (keyFile !== undefined && certFile === undefined) throw new NatsSettingsError("NATS_TLS_KEY is set without NATS_TLS_CERT (the client certificate)");

  // Without NATS_TLS_CA the system's CAs are trusted (a tls:// URL alone).
  const options: NatsTlsOptions = {};
  if (caFile !== undefined) {
    try {
      new X509Certificate(readSettingFile("NATS_TLS_CA", caFile));
    } catch (err) {
      if (err instanceof NatsSettingsError) throw err;
      throw new NatsSettingsError(`NATS_TLS_CA: ${caFile} is not a PEM certificate: ${(err as Error).message}`);
    }
    options.caFile = caFile;
  }
  if (certFile !== undefined && keyFile !== undefined) {
    const cert = readSettingFile("NATS_TLS_CERT", certFile);
    const key = readSettingFile("NATS_TLS_KEY", keyFile);
    try {
      // Parses both and checks that the key belongs to the certificate.
      tls.createSecureContext({ cert, key });
    } catch (err) {
      throw new NatsSettingsError(`NATS_TLS_CERT/NATS_TLS_KEY: ${certFile} and ${keyFile} are not a PEM certificate and its key: ${(err as Error).message}`);
    }
    options.certFile = certFile;
    options.keyFile = keyFile;
  }
  const addresses = servers.map((url) => url.hostname.replace(/^\[(.*)\]$/, "$1")).filter((host) => isIP(host) !== 0);
  if (addresses.length > 0) options.checkServerIdentity = identityCheckFor(addresses);
  return options;
}

/**
 * nats.js 2.x checks the certificate of a server it reaches by IP address against the
 * name "localhost" (nats.js#303): such a certificate is also accepted when it is valid
 * for one of the addresses TRANSPORTER lists. Names are checked as usual.
 */
export function identityCheckFor(addresses: string[]): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const byName = tls.checkServerIdentity(host, cert);
    if (byName === undefined) return undefined;
    return addresses.some((address) => tls.checkServerIdentity(address, cert) === undefined) ? undefined : byName;
  };
}

function readSettingFile(name: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new NatsSettingsError(`${name}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}
