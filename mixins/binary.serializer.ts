/**
 * Moleculer's JSON serializer, except that a request's params or a response's data that
 * is a Buffer travels as its own bytes after the JSON of the rest of the packet:
 *
 *   0x00 | u32 header bytes | header (the packet as JSON, the Buffer field null) | the Buffer
 *
 * Why: write messages are binary (src/wire/group-codec.ts), and Moleculer's JSON
 * serializer turns a Buffer into {"type":"Buffer","data":[1,2,...]}, four bytes of JSON
 * per byte. MsgPack or CBOR would carry a Buffer too but re-encode every other field
 * through a library; here the packet envelope stays JSON (readable in NATS tooling)
 * and the payload is copied once, or not at all when it comes with room in front for the
 * envelope (a group codec message: src/wire/bytes.ts withRoomInFront). Every other packet
 * is plain JSON (starts with '{').
 *
 * The header is padded with spaces (JSON allows them) so the Buffer starts at a multiple
 * of 8 in the packet: a receiver whose packet starts aligned (a fresh buffer, or Node's
 * pool, which aligns to 8) reads typed columns of it in place (src/wire/field-groups-codec.ts).
 */
import { Serializers } from "moleculer";
import { takeRoomInFront } from "../src/wire/bytes";

const BINARY = 0x00;
const REQUEST = "REQ";
const RESPONSE = "RES";

type Packet = Record<string, unknown>;

const SPACE = 0x20;
const PAYLOAD_ALIGN = 8;
/** The header's bytes padded so the payload after the 5 bytes in front and the header starts at a multiple of PAYLOAD_ALIGN. */
const alignedHeaderBytes = (bytes: number): number => bytes + ((PAYLOAD_ALIGN - ((5 + bytes) % PAYLOAD_ALIGN)) % PAYLOAD_ALIGN);

function bufferField(type: string): "params" | "data" | null {
  return type === REQUEST ? "params" : type === RESPONSE ? "data" : null;
}

export class BinaryPayloadSerializer extends Serializers.Base {
  serialize(obj: Packet, type: string): Buffer {
    const field = bufferField(type);
    const raw = field === null ? undefined : obj[field];
    if (!Buffer.isBuffer(raw)) return Buffer.from(JSON.stringify(obj));
    obj[field!] = null;
    let header: string;
    try {
      header = JSON.stringify(obj);
    } finally {
      obj[field!] = raw;
    }
    const headerBytes = alignedHeaderBytes(Buffer.byteLength(header));
    // Bytes of the group codec come with room in front (src/wire/bytes.ts): the envelope goes there.
    const room = takeRoomInFront(raw);
    if (room >= 5 + headerBytes) {
      const start = raw.byteOffset - 5 - headerBytes;
      const framed = Buffer.from(raw.buffer, start, 5 + headerBytes + raw.length);
      framed[0] = BINARY;
      framed.writeUInt32LE(headerBytes, 1);
      framed.fill(SPACE, 5 + framed.write(header, 5, "utf8"), 5 + headerBytes);
      return framed;
    }
    const out = Buffer.allocUnsafe(5 + headerBytes + raw.length);
    out[0] = BINARY;
    out.writeUInt32LE(headerBytes, 1);
    out.fill(SPACE, 5 + out.write(header, 5, "utf8"), 5 + headerBytes);
    raw.copy(out, 5 + headerBytes);
    return out;
  }

  deserialize(buf: Buffer, type: string): Packet {
    if (buf[0] !== BINARY) return JSON.parse(buf as unknown as string) as Packet;
    const field = bufferField(type);
    if (field === null) throw new Error(`binary payload in a ${type} packet`);
    const headerBytes = buf.readUInt32LE(1);
    const obj = JSON.parse(buf.toString("utf8", 5, 5 + headerBytes)) as Packet;
    obj[field] = buf.subarray(5 + headerBytes);
    return obj;
  }
}
