/**
 * CSV answers (RFC 4180): a header row, then one row per item, CRLF line ends. A field
 * holding a comma, a double quote, CR or LF is quoted, its quotes doubled. A text field
 * a spreadsheet would run as a formula (beginning with =, +, -, @, a tab or CR) is
 * written quoted with a single quote before it ("'=cmd()"): shown as text, never run
 * (OWASP's advice on CSV injection). Numbers are written as they are.
 */
import { Readable } from "stream";

export const CSV_CONTENT_TYPE = "text/csv; charset=utf-8";

const NEEDS_QUOTES = /[",\r\n]/;
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvField(value: string | number): string {
  if (typeof value === "number") return String(value);
  if (FORMULA_START.test(value)) return `"'${value.replace(/"/g, '""')}"`;
  return NEEDS_QUOTES.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** One row: the fields of `item` named by `columns`, in that order, CRLF-terminated. */
export function csvRow(columns: readonly string[], item: Record<string, string | number>): string {
  let line = "";
  for (let i = 0; i < columns.length; i++) line += (i === 0 ? "" : ",") + csvField(item[columns[i]]);
  return line + "\r\n";
}

export async function* csvChunks(columns: readonly string[], slices: AsyncIterable<readonly object[]> | Iterable<readonly object[]>): AsyncGenerator<string> {
  yield columns.map(csvField).join(",") + "\r\n";
  for await (const items of slices) {
    let chunk = "";
    for (const item of items) chunk += csvRow(columns, item as Record<string, string | number>);
    if (chunk !== "") yield chunk;
  }
}

/** The header row and one row per item of the slices, as a byte stream (pulled as the client reads). */
export function csvStream(columns: readonly string[], slices: AsyncIterable<readonly object[]> | Iterable<readonly object[]>): Readable {
  return Readable.from(csvChunks(columns, slices), { objectMode: false });
}
