/**
 * The representation an HTTP client asks for: `format=csv|json` in the query, else
 * CSV when the Accept header lists text/csv (with a q above 0), else JSON.
 */
export type ResponseFormat = "json" | "csv";

const CSV_MEDIA = /(?:^|,)\s*text\/csv\s*(;[^,]*)?(?=,|$)/i;
const ZERO_Q = /;\s*q\s*=\s*0(?:\.0*)?\s*(;|$)/i;

/** The format asked for, or null for a `format` that is neither csv nor json. */
export function responseFormat(format: unknown, accept: string | undefined): ResponseFormat | null {
  if (format !== undefined) return format === "csv" || format === "json" ? format : null;
  const csv = accept === undefined ? null : CSV_MEDIA.exec(accept);
  return csv !== null && !ZERO_Q.test(csv[1] ?? "") ? "csv" : "json";
}
