/** CSV answers: RFC 4180 quoting, and data a spreadsheet must never run as a formula. */
import { csvChunks, csvField, csvRow, csvStream } from "../../src/query/csv";
import { responseFormat } from "../../src/query/format";
import { asCsvText, parseCsv } from "../support/query-model";

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let out = "";
  for await (const chunk of stream) out += chunk.toString();
  return out;
}

describe("CSV", () => {
  test.each([
    ["plain", "plain"],
    ["a,b", '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ["two\nlines", '"two\nlines"'],
    ["cr\rhere", '"cr\rhere"'],
    ["=cmd()", `"'=cmd()"`],
    ["+1", `"'+1"`],
    ["-2+3", `"'-2+3"`],
    ["@SUM(A1)", `"'@SUM(A1)"`],
    ["\tTAB", `"'\tTAB"`],
    ["\rCR", `"'\rCR"`],
    ['=HYPERLINK("http://x","y")', `"'=HYPERLINK(""http://x"",""y"")"`],
    ["a=b", "a=b"],
    ["", ""],
    ["🚀 ünï", "🚀 ünï"],
  ])("%j is written %s", (value, written) => {
    expect(csvField(value)).toBe(written);
  });

  test("numbers are written as they are", () => {
    expect(csvField(0)).toBe("0");
    expect(csvField(Number.MAX_SAFE_INTEGER)).toBe("9007199254740991");
  });

  test("hostile rows read back as the data (a formula only with its quote prefix), one row each", async () => {
    const hostile = ["a,b", 'q"uote', "new\r\nline", "=cmd()", "-1", "@x", "\t", "plain", ",", '"', "\n"];
    const items = hostile.map((s, i) => ({ name: s, other: `${s}${s}`, n: i }));
    const csv = await text(csvStream(["name", "other", "n"], [items.slice(0, 4), [], items.slice(4)]));
    expect(csv.endsWith("\r\n")).toBe(true);
    const rows = parseCsv(csv);
    expect(rows[0]).toEqual(["name", "other", "n"]);
    expect(rows.slice(1)).toEqual(items.map((it) => [it.name, it.other, it.n].map(asCsvText)));
  });

  test("a header row even without data; rows in column order", async () => {
    const chunks: string[] = [];
    for await (const c of csvChunks(["b", "a"], [])) chunks.push(c);
    expect(chunks).toEqual(["b,a\r\n"]);
    expect(csvRow(["b", "a"], { a: 1, b: "x" })).toBe("x,1\r\n");
  });
});

describe("the format asked for", () => {
  test.each([
    [undefined, undefined, "json"],
    [undefined, "application/json", "json"],
    [undefined, "text/csv", "csv"],
    [undefined, "text/html,application/xhtml+xml,*/*;q=0.8", "json"],
    [undefined, "application/json, text/csv;q=0.5", "csv"],
    [undefined, "TEXT/CSV; charset=utf-8", "csv"],
    [undefined, "text/csv;q=0", "json"],
    [undefined, "text/csvx", "json"],
    ["csv", "application/json", "csv"],
    ["json", "text/csv", "json"],
    ["xml", undefined, null],
    [["csv", "csv"], undefined, null],
  ])("format=%j, Accept %j: %s", (format, accept, want) => {
    expect(responseFormat(format, accept)).toBe(want);
  });
});
