/**
 * Backpressure on a real node (embedded, MAX_INFLIGHT=2): a burst of concurrent writes
 * gets 429 with Retry-After for what the gateway will not hold, nothing of a refused
 * request is applied, and writers that retry with the same Idempotency-Key until 200
 * (429 included) end exact: the hours read back are what was acknowledged. Also the
 * per-token rate limit (RATE_LIMIT_PER_MIN).
 */
import { expectedHour, flow, freshHour, request, type Flow } from "../support/api-contract";
import { bearer, tokensFile } from "../support/gateway-auth";
import { parseExposition, sampleValue } from "../support/prometheus";
import { sleep, startNode, type NodeProcess } from "../support/processes";

/** Statuses a writer retries with the same key: overload (429) and the retryable 5xx. */
const RETRYABLE = new Set([429, 502, 503, 504]);

/**
 * Posts `batch` with `key` until it is acknowledged. Not the test's LedgerWriter (which
 * does not retry 429): this one is what an agent does behind a gateway with backpressure.
 * It waits a little, with jitter, rather than the whole Retry-After second, to keep the
 * gateway busy and the test short.
 */
async function postUntilAcknowledged(url: string, batch: Flow[], key: string, counts: { attempts: number; tooMany: number }): Promise<void> {
  for (let attempt = 0; attempt < 2000; attempt++) {
    counts.attempts++;
    const r = await request(`${url}/flows`, { method: "POST", json: batch, headers: { "idempotency-key": key } });
    if (r.status === 200) {
      expect(r.body).toEqual({ accepted: batch.length });
      return;
    }
    if (!RETRYABLE.has(r.status)) throw new Error(`batch ${key}: unexpected ${r.status} ${JSON.stringify(r.body)}`);
    if (r.status === 429) counts.tooMany++;
    await sleep(5 + Math.random() * 20);
  }
  throw new Error(`batch ${key} never acknowledged`);
}

describe("MAX_INFLIGHT=2", () => {
  let node: NodeProcess;
  beforeAll(async () => {
    node = await startNode({ NODEID: "backpressure", MAX_INFLIGHT: "2" });
  });
  afterAll(() => node?.stop());

  const rejected = async () => {
    const f = parseExposition((await request(`${node.url}/metrics`)).body as string);
    return sampleValue(f, "flowmesh_rejected_batches_total", { node_id: "backpressure", reason: "too_many_requests" });
  };

  test("a burst of 50 concurrent POSTs: the excess gets 429 + Retry-After: 1 at once, and only acknowledged ones are applied", async () => {
    const h = freshHour();
    const before = await rejected();
    const batches = Array.from({ length: 50 }, (_, b) => Array.from({ length: 1000 }, (_, i) => flow(`burst-${b}`, `d${i % 10}`, "v", h, 1, 1)));
    const replies = await Promise.all(batches.map((batch) => request(`${node.url}/flows`, { method: "POST", json: batch })));
    const statuses = replies.map((r) => r.status);
    const ok = statuses.filter((s) => s === 200).length;
    const tooMany = replies.filter((r) => r.status === 429);
    expect(ok + tooMany.length).toBe(50);
    expect(ok).toBeGreaterThanOrEqual(2);
    expect(tooMany.length).toBeGreaterThan(0);
    for (const r of tooMany) {
      expect(r.headers.get("retry-after")).toBe("1");
      expect(r.body).toMatchObject({ code: 429, type: "TOO_MANY_REQUESTS", message: expect.stringMatching(/MAX_INFLIGHT/) });
    }
    expect((await rejected()) - before).toBe(tooMany.length);
    // Exactly the acknowledged batches are in the hour.
    const acknowledged = batches.filter((_, i) => statuses[i] === 200).flat();
    expect((await request(`${node.url}/flows?hour=${h}`)).body).toEqual(expectedHour(acknowledged, h));
    // Reads are not write requests: they are never refused for it.
    const reads = await Promise.all(Array.from({ length: 20 }, () => request(`${node.url}/flows?hour=${h}`)));
    expect(reads.every((r) => r.status === 200)).toBe(true);
  });

  test("writers retrying 429 with the same Idempotency-Key end exact", async () => {
    const hours = [freshHour(), freshHour(), freshHour()];
    const writers = 8;
    const batchesPerWriter = 25;
    const counts = { attempts: 0, tooMany: 0 };
    const ledgers: Flow[][] = Array.from({ length: writers }, () => []);
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let seq = 0; seq < batchesPerWriter; seq++) {
          const batch = Array.from({ length: 200 }, (_, i) => {
            const n = seq * 200 + i;
            return flow(`src-${n % 97}`, `dst-${n % 13}`, `vpc-w${w}`, hours[n % hours.length], 1 + (n % 1000), 1 + (n % 7));
          });
          await postUntilAcknowledged(node.url, batch, `bp-${hours[0]}-w${w}-${seq}`, counts);
          ledgers[w].push(...batch);
        }
      }),
    );
    // The run went through the limit, not around it.
    expect(counts.tooMany).toBeGreaterThan(0);
    const acknowledged = ledgers.flat();
    expect(acknowledged).toHaveLength(writers * batchesPerWriter * 200);
    for (const h of hours) expect((await request(`${node.url}/flows?hour=${h}`)).body).toEqual(expectedHour(acknowledged, h));
    // eslint-disable-next-line no-console
    console.log(`backpressure ledger: ${writers * batchesPerWriter} batches acknowledged after ${counts.attempts} attempts, ${counts.tooMany} answered 429; read back exact`);
  });
});

describe("RATE_LIMIT_PER_MIN", () => {
  const A = "rate-a-0123456789abcdef";
  const B = "rate-b-0123456789abcdef";
  let node: NodeProcess;
  beforeAll(async () => {
    node = await startNode({ NODEID: "ratelimit", RATE_LIMIT_PER_MIN: "5", API_TOKENS_FILE: tokensFile([`a ingest,read ${A}`, `b read ${B}`]) });
  });
  afterAll(() => node?.stop());

  test("each token gets its own 5 requests a minute; the 6th is 429 with Retry-After; probes are not counted", async () => {
    const h = freshHour();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await request(`${node.url}/flows?hour=${h}`, { headers: bearer(A) })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    const limited = await request(`${node.url}/flows`, { method: "POST", json: [flow("a", "b", "c", h, 1, 1)], headers: bearer(A) });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect(limited.body).toMatchObject({ type: "TOO_MANY_REQUESTS", message: expect.stringMatching(/token 'a'.*RATE_LIMIT_PER_MIN/) });
    expect((await request(`${node.url}/flows?hour=${h}`, { headers: bearer(B) })).status).toBe(200);
    for (let i = 0; i < 10; i++) expect((await request(`${node.url}/health`)).status).toBe(200);
    expect((await request(`${node.url}/flows?hour=${h}`, { headers: bearer(B) })).body).toEqual([]);
  });
});
