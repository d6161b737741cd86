// Minimal typings for the parts of autocannon@8's programmatic API that bench/harness/load.ts uses
// (the package ships no types, and @types/autocannon is not installed).
declare module "autocannon" {
  namespace autocannon {
    interface Request {
      method?: string;
      path?: string;
      body?: string | Buffer;
      headers?: Record<string, string>;
    }

    interface Options {
      url: string;
      connections?: number;
      pipelining?: number;
      /** seconds */
      duration?: number;
      amount?: number;
      /** seconds */
      timeout?: number;
      method?: string;
      body?: string | Buffer;
      headers?: Record<string, string>;
      requests?: Request[];
    }

    interface Histogram {
      average: number;
      mean: number;
      stddev: number;
      min: number;
      max: number;
      total: number;
      p50: number;
      p90: number;
      p99: number;
    }

    interface Result {
      duration: number;
      errors: number;
      timeouts: number;
      non2xx: number;
      mismatches: number;
      resets: number;
      "1xx": number;
      "2xx": number;
      "3xx": number;
      "4xx": number;
      "5xx": number;
      statusCodeStats: Record<string, { count: number }>;
      latency: Histogram;
      requests: Histogram;
      throughput: Histogram;
    }

    type Callback = (err: Error | null, result: Result) => void;
  }

  function autocannon(opts: autocannon.Options, cb: autocannon.Callback): import("events").EventEmitter;

  export = autocannon;
}
