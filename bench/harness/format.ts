/** Number formatting for the bench's progress lines and table. */

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export const fmt = (n: number | null | undefined, digits: number): string => (n === null || n === undefined ? "-" : digits === 0 ? fmtInt(n) : n.toFixed(digits));

/** flows/s in thousands, e.g. "612k" */
export const fmtK = (n: number): string => `${Math.round(n / 1000)}k`;

/** A goal's mark: met, missed, or not judged. */
export const mark = (ok: boolean | null): string => (ok === null ? "" : ok ? " ✓" : " ✗");

/** CPU ms per request by process: "gw 2.78, n1 0.90, total 5.87". */
export const fmtCpu = (x: Record<string, number>): string =>
  Object.entries(x)
    .map(([name, ms]) => `${name} ${fmt(ms, 2)}`)
    .join(", ");
