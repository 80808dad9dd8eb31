"""Exported codecs for the network servers the cities already run: `dos-edge codec export --format ttn|chirpstack`.

From the payload schema, one JavaScript file per node kind with `decodeUplink`, `decodeDownlink` and `encodeDownlink`
(plain ES5: no modules, no require), which decode and encode exactly as `dos_codecs.schema` does: the same values
(raw / 10^n for a scale of 10^-n, correctly rounded), the same warnings text, and the same error reasons. The kind's
schema is embedded as a generated table; the CBOR runtime is the same for every kind. For The Things Stack also a
Device-Repository-style `<kind>.yaml` of examples whose outputs come from the Python decoder; for ChirpStack a README.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cbor2

from dos_codecs.errors import PayloadError, SchemaError
from dos_codecs.schema import Field, Message, Schema, available_kinds, load_schema

FORMATS = ("ttn", "chirpstack")
GENERATOR_COMMAND = "dos-edge codec export"
#: Bounds at or beyond 2^53 are not exact JavaScript numbers, so range checks could differ from Python's.
_JS_EXACT_LIMIT = 2**53

_RUNTIME_JS = r"""
function PayloadError(reason, detail) { this.reason = reason; this.detail = detail; }
function fail(reason, detail) { throw new PayloadError(reason, detail); }
function notCbor(detail) { fail("bad_cbor", "payload is not CBOR: " + detail); }

/* Integers of any size travel as decimal text ("-123"), so 64-bit and bignum values stay exact. */
function mulAdd(digits, mul, add) {
  var out = "", carry = add, i, v;
  for (i = digits.length - 1; i >= 0; i--) {
    v = (digits.charCodeAt(i) - 48) * mul + carry;
    out = (v % 10) + out;
    carry = Math.floor(v / 10);
  }
  while (carry > 0) { out = (carry % 10) + out; carry = Math.floor(carry / 10); }
  return out.replace(/^0+(?=\d)/, "");
}
function digitsOfBytes(bytes) {
  var digits = "0", i;
  for (i = 0; i < bytes.length; i++) { digits = mulAdd(digits, 256, bytes[i]); }
  return digits;
}
function intTimes(text, factor) {
  var negative = text.charAt(0) === "-", product = mulAdd(negative ? text.slice(1) : text, factor, 0);
  return negative && product !== "0" ? "-" + product : product;
}
function intDividedByPowerOfTen(text, exponent) {
  var negative = text.charAt(0) === "-", digits = negative ? text.slice(1) : text;
  while (digits.length <= exponent) { digits = "0" + digits; }
  var cut = digits.length - exponent;
  return parseFloat((negative ? "-" : "") + digits.slice(0, cut) + "." + digits.slice(cut));
}
function compareNonNegative(a, b) {
  if (a.length !== b.length) { return a.length - b.length; }
  return a < b ? -1 : (a > b ? 1 : 0);
}

/* Python's repr() of floats, ints, strings, bytes and containers, for messages identical to the Python decoder's. */
function pyFloat(x) {
  if (x !== x) { return "nan"; }
  if (x === Infinity) { return "inf"; }
  if (x === -Infinity) { return "-inf"; }
  if (x === 0) { return 1 / x < 0 ? "-0.0" : "0.0"; }
  var parts = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(x.toExponential());
  var sign = parts[1], digits = parts[2] + (parts[3] || ""), exponent = parseInt(parts[4], 10), text;
  if (exponent < -4 || exponent >= 16) {
    var size = Math.abs(exponent);
    text = digits.charAt(0) + (digits.length > 1 ? "." + digits.slice(1) : "");
    return sign + text + "e" + (exponent < 0 ? "-" : "+") + (size < 10 ? "0" : "") + size;
  }
  if (exponent < 0) { return sign + "0." + new Array(-exponent).join("0") + digits; }
  while (digits.length <= exponent) { digits += "0"; }
  text = digits.slice(0, exponent + 1) + "." + (digits.length > exponent + 1 ? digits.slice(exponent + 1) : "0");
  return sign + text;
}
function hex2(code) { return (code < 16 ? "0" : "") + code.toString(16); }
function pyQuote(codes) {
  var single = false, double = false, i;
  for (i = 0; i < codes.length; i++) { single = single || codes[i] === 39; double = double || codes[i] === 34; }
  return single && !double ? 34 : 39;
}
function pyStr(text) {
  var codes = [], i, c, out, quote, point;
  for (i = 0; i < text.length; i++) { codes.push(text.charCodeAt(i)); }
  quote = pyQuote(codes);
  out = String.fromCharCode(quote);
  for (i = 0; i < codes.length; i++) {
    c = codes[i];
    if (c === quote || c === 92) { out += "\\" + String.fromCharCode(c); }
    else if (c === 9) { out += "\\t"; } else if (c === 10) { out += "\\n"; } else if (c === 13) { out += "\\r"; }
    else if (c < 32 || (c >= 127 && c <= 160) || c === 173) { out += "\\x" + hex2(c); }
    else if (c >= 0xD800 && c < 0xDC00 && i + 1 < codes.length && codes[i + 1] >= 0xDC00 && codes[i + 1] < 0xE000) {
      point = (c - 0xD800) * 1024 + (codes[i + 1] - 0xDC00) + 0x10000;
      /* planes 4 to 16 hold no printable characters but the variation selectors (approximation of isprintable) */
      out += point >= 0x40000 && (point < 0xE0100 || point > 0xE01EF) ?
        "\\U" + ("0000000" + point.toString(16)).slice(-8) : text.substr(i, 2);
      i++;
    } else { out += text.charAt(i); }
  }
  return out + String.fromCharCode(quote);
}
function pyBytes(codes) {
  var quote = pyQuote(codes), out = "b" + String.fromCharCode(quote), i, c;
  for (i = 0; i < codes.length; i++) {
    c = codes[i];
    if (c === quote || c === 92) { out += "\\" + String.fromCharCode(c); }
    else if (c === 9) { out += "\\t"; } else if (c === 10) { out += "\\n"; } else if (c === 13) { out += "\\r"; }
    else if (c < 32 || c >= 127) { out += "\\x" + hex2(c); }
    else { out += String.fromCharCode(c); }
  }
  return out + String.fromCharCode(quote);
}
function shortText(text) {
  var points = [], i, c;
  for (i = 0; i < text.length; i++) {
    c = text.charCodeAt(i);
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < text.length && text.charCodeAt(i + 1) >= 0xDC00 &&
        text.charCodeAt(i + 1) < 0xE000) {
      points.push(text.substr(i, 2));
      i++;
    } else {
      points.push(text.charAt(i));
    }
  }
  return points.length <= 40 ? text : points.slice(0, 37).join("") + "...";
}
var PY_TYPES = {"int": "int", "bool": "bool", "float": "float", "str": "str", "bytes": "bytes", "list": "list",
  "tuple": "tuple", "dict": "dict", "frozendict": "frozendict", "none": "NoneType", "undefined": "UndefinedType",
  "simple": "CBORSimpleValue", "tag": "CBORTag"};
function pyRepr(item) {
  var parts = [], i;
  switch (item.t) {
    case "int": return item.s;
    case "bool": return item.v ? "True" : "False";
    case "float": return pyFloat(item.v);
    case "str": return pyStr(item.v);
    case "bytes": return pyBytes(item.v);
    case "none": return "None";
    case "undefined": return "undefined";
    case "simple": return "CBORSimpleValue(" + item.v + ")";
    case "tag": return "CBORTag(" + item.tag + ", " + pyRepr(item.v) + ")";
    case "list": case "tuple":
      for (i = 0; i < item.v.length; i++) { parts.push(pyRepr(item.v[i])); }
      if (item.t === "list") { return "[" + parts.join(", ") + "]"; }
      return "(" + parts.join(", ") + (parts.length === 1 ? ",)" : ")");
    default:
      for (i = 0; i < item.keys.length; i++) { parts.push(pyRepr(item.keys[i]) + ": " + pyRepr(item.values[i])); }
      return item.t === "dict" ? "{" + parts.join(", ") + "}" : "frozendict({" + parts.join(", ") + "})";
  }
}
/* Identity of a map key as Python's dict sees it (1 == 1.0 == True == CBORSimpleValue(1)); null for NaN, which
 * equals nothing. */
function keyIdentity(item) {
  var parts = [], i, inner;
  switch (item.t) {
    case "int": return "n" + item.s;
    case "bool": return item.v ? "n1" : "n0";
    case "simple": return "n" + item.v;
    case "float":
      if (item.v !== item.v) { return null; }
      if (Math.floor(item.v) === item.v && Math.abs(item.v) < 9007199254740992) { return "n" + String(item.v); }
      return "f" + pyFloat(item.v);
    case "str": return "s" + item.v;
    case "bytes": return "b" + item.v.join(",");
    case "tag": inner = keyIdentity(item.v); return inner === null ? null : "t" + item.tag + ":" + inner;
    case "tuple": case "frozendict":
      var items = item.t === "tuple" ? item.v : item.keys.concat(item.values);
      for (i = 0; i < items.length; i++) {
        inner = keyIdentity(items[i]);
        if (inner === null) { return null; }
        parts.push(inner);
      }
      return item.t + "(" + parts.join("|") + ")";
    default: return item.t + (item.v === undefined ? "" : item.v);
  }
}
function asKey(item) {
  var i;
  if (item.t === "list") {
    for (i = 0; i < item.v.length; i++) { item.v[i] = asKey(item.v[i]); }
    item.t = "tuple";
  } else if (item.t === "dict") {
    item.t = "frozendict";
  }
  return item;
}

/* CBOR (RFC 8949) decoder accepting what the Python decoder (cbor2, max depth 4, no duplicate keys) accepts, except
 * the semantic tags cbor2 turns into Python objects (dates, decimals, UUIDs, regular expressions, ...): those are
 * refused here (bad_cbor), where cbor2 accepts the well-formed ones. Other tags are kept as opaque values. */
var MAX_DEPTH = 4;
var INTERPRETED_TAGS = {"0": 1, "1": 1, "4": 1, "5": 1, "25": 1, "28": 1, "29": 1, "30": 1, "35": 1, "36": 1, "37": 1,
  "100": 1, "256": 1, "258": 1, "260": 1, "261": 1, "1004": 1};
function Reader(bytes) { this.bytes = bytes; this.pos = 0; }
Reader.prototype.take = function (count) {
  var available = this.bytes.length - this.pos, out = [], i;
  if (count > available) {
    notCbor("premature end of stream (expected to read at least " + (count - available) + " bytes, got 0 instead)");
  }
  for (i = 0; i < count; i++) { out.push(this.bytes[this.pos + i] & 0xFF); }
  this.pos += count;
  return out;
};
Reader.prototype.peek = function () {
  if (this.pos >= this.bytes.length) {
    notCbor("premature end of stream (expected to read at least 1 bytes, got 0 instead)");
  }
  return this.bytes[this.pos] & 0xFF;
};
Reader.prototype.argument = function (info, what) {
  if (info < 24) { return String(info); }
  if (info <= 27) { return digitsOfBytes(this.take(1 << (info - 24))); }
  return notCbor("error decoding " + what + ": unknown " + what + " subtype 0x" + hex2(info));
};
Reader.prototype.item = function (depth) {
  var initial = this.take(1)[0], major = initial >> 5, info = initial & 31;
  if (major === 7) { return this.special(info); }
  if (major >= 4 && depth > MAX_DEPTH) { notCbor("maximum container nesting depth (" + MAX_DEPTH + ") exceeded"); }
  if (info === 31) { return this.indefinite(major, depth); }
  var names = ["unsigned integer", "negative integer", "byte string", "text string", "array", "map", "semantic tag"];
  var digits = this.argument(info, names[major]), count = parseFloat(digits);
  switch (major) {
    case 0: return {t: "int", s: digits};
    case 1: return {t: "int", s: "-" + mulAdd(digits, 1, 1)};
    case 2: return {t: "bytes", v: this.take(count)};
    case 3: return {t: "str", v: this.text(this.take(count))};
    case 4: return this.list(count, depth);
    case 5: return this.map(count, depth);
    default: return this.tag(digits, depth);
  }
};
Reader.prototype.text = function (bytes) {
  var text = utf8(bytes);
  if (text === null) { notCbor("error decoding text string"); }
  return text;
};
Reader.prototype.indefinite = function (major, depth) {
  var chunks = [], all = [], names = ["", "", "byte string", "text string"], i, initial;
  if (major === 2 || major === 3) {
    while (this.peek() !== 0xFF) {
      initial = this.take(1)[0];
      if (initial >> 5 !== major || (initial & 31) === 31) {
        notCbor("error decoding " + names[major] + ": chunk of another type in an indefinite length " + names[major]);
      }
      chunks.push(this.take(parseFloat(this.argument(initial & 31, "string length"))));
    }
    this.pos++;
    if (major === 2) {
      for (i = 0; i < chunks.length; i++) { all = all.concat(chunks[i]); }
      return {t: "bytes", v: all};
    }
    for (i = 0; i < chunks.length; i++) { chunks[i] = this.text(chunks[i]); }
    return {t: "str", v: chunks.join("")};
  }
  if (major === 4) { return this.list(-1, depth); }
  if (major === 5) { return this.map(-1, depth); }
  return notCbor("indefinite length is not allowed for major type " + major);
};
Reader.prototype.more = function (count, done) {
  if (count >= 0) { return done < count; }
  if (this.peek() === 0xFF) { this.pos++; return false; }
  return true;
};
Reader.prototype.list = function (count, depth) {
  var items = [];
  while (this.more(count, items.length)) { items.push(this.item(depth + 1)); }
  return {t: "list", v: items};
};
Reader.prototype.map = function (count, depth) {
  var keys = [], values = [], seen = {}, key, identity;
  while (this.more(count, keys.length)) {
    key = asKey(this.item(depth + 1));
    identity = keyIdentity(key);
    if (identity !== null && seen.hasOwnProperty(identity)) {
      notCbor("error decoding map: Duplicate map key: " + pyRepr(key));
    }
    if (identity !== null) { seen[identity] = true; }
    keys.push(key);
    values.push(this.item(depth + 1));
  }
  return {t: "dict", keys: keys, values: values};
};
Reader.prototype.tag = function (tag, depth) {
  var content = this.item(depth + 1), kind = tag === "2" ? "positive" : "negative", digits;
  if (tag === "55799") { return content; }
  if (INTERPRETED_TAGS.hasOwnProperty(tag)) { notCbor("semantic tag " + tag + " is not read by this codec"); }
  if (tag !== "2" && tag !== "3") { return {t: "tag", tag: tag, v: content}; }
  if (content.t !== "bytes") {
    notCbor("error decoding " + kind + " bignum: bignum value must be a byte string, not <class '" +
            PY_TYPES[content.t] + "'>");
  }
  digits = digitsOfBytes(content.v);
  return {t: "int", s: tag === "2" ? digits : "-" + mulAdd(digits, 1, 1)};
};
Reader.prototype.special = function (info) {
  var b, simple;
  if (info < 20) { return {t: "simple", v: info}; }
  switch (info) {
    case 20: return {t: "bool", v: false};
    case 21: return {t: "bool", v: true};
    case 22: return {t: "none"};
    case 23: return {t: "undefined"};
    case 24:
      simple = this.take(1)[0];
      if (simple < 32) { notCbor("error decoding special value: invalid two-byte sequence for simple value"); }
      return {t: "simple", v: simple};
    case 25:
      b = this.take(2);
      return {t: "float", v: binaryFloat(b[0] >> 7, (b[0] >> 2) & 31, (b[0] & 3) * 256 + b[1], 31, 10, 15)};
    case 26:
      b = this.take(4);
      return {t: "float", v: binaryFloat(b[0] >> 7, ((b[0] & 127) << 1) | (b[1] >> 7),
                                         (b[1] & 127) * 65536 + b[2] * 256 + b[3], 255, 23, 127)};
    case 27:
      b = this.take(8);
      return {t: "float", v: binaryFloat(b[0] >> 7, ((b[0] & 127) << 4) | (b[1] >> 4),
                                         ((b[1] & 15) * 65536 + b[2] * 256 + b[3]) * 4294967296 +
                                         b[4] * 16777216 + b[5] * 65536 + b[6] * 256 + b[7], 2047, 52, 1023)};
    case 31: return notCbor("break code encountered where a data item was expected");
    default: return notCbor("error decoding special value: undefined reserved major type 7 subtype 0x" + hex2(info));
  }
};
/* An IEEE 754 value from its fields; every product below is exact. */
function binaryFloat(sign, exponent, mantissa, maxExponent, mantissaBits, bias) {
  var magnitude;
  if (exponent === maxExponent) { magnitude = mantissa ? NaN : Infinity; }
  else if (exponent === 0) { magnitude = mantissa * Math.pow(2, 1 - bias - mantissaBits); }
  else { magnitude = (Math.pow(2, mantissaBits) + mantissa) * Math.pow(2, exponent - bias - mantissaBits); }
  return sign ? -magnitude : magnitude;
}
/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF); null if the bytes are not UTF-8. */
function utf8(bytes) {
  var out = "", i = 0, n = bytes.length, lead, count, low, high, point, j;
  while (i < n) {
    lead = bytes[i++];
    if (lead < 0x80) { out += String.fromCharCode(lead); continue; }
    if (lead >= 0xC2 && lead <= 0xDF) { count = 1; low = 0x80; high = 0xBF; point = lead & 0x1F; }
    else if (lead >= 0xE0 && lead <= 0xEF) {
      count = 2; low = lead === 0xE0 ? 0xA0 : 0x80; high = lead === 0xED ? 0x9F : 0xBF; point = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      count = 3; low = lead === 0xF0 ? 0x90 : 0x80; high = lead === 0xF4 ? 0x8F : 0xBF; point = lead & 0x07;
    } else { return null; }
    if (i + count > n || bytes[i] < low || bytes[i] > high) { return null; }
    for (j = 0; j < count; j++) {
      if (j > 0 && (bytes[i + j] < 0x80 || bytes[i + j] > 0xBF)) { return null; }
      point = point * 64 + (bytes[i + j] & 0x3F);
    }
    i += count;
    if (point >= 0x10000) {
      point -= 0x10000;
      out += String.fromCharCode(0xD800 + (point >> 10), 0xDC00 + (point & 0x3FF));
    } else {
      out += String.fromCharCode(point);
    }
  }
  return out;
}

/* The schema codec, as dos_codecs.schema.Schema does it. */
function messageFor(fPort, direction) {
  var i, message;
  for (i = 0; i < SCHEMA.messages.length; i++) {
    message = SCHEMA.messages[i];
    if (message.fport === fPort && message.direction === direction) { return message; }
  }
  return fail("unknown_fport", SCHEMA.kind + " v" + SCHEMA.version + " has no " + direction +
              "link message on FPort " + fPort);
}
function loadMap(bytes) {
  var reader = new Reader(bytes), top = reader.item(1), i, key;
  if (reader.pos !== bytes.length) {
    fail("trailing_bytes", (bytes.length - reader.pos) + " bytes after the CBOR item");
  }
  if (top.t !== "dict") { fail("not_a_map", "payload is a CBOR " + PY_TYPES[top.t] + ", not a map"); }
  for (i = 0; i < top.keys.length; i++) {
    key = top.keys[i];
    if (key.t !== "int" || key.s.charAt(0) === "-") {
      fail("bad_key", "map key " + shortText(pyRepr(key)) + " is not an unsigned int");
    }
  }
  return top;
}
function decodePayload(fPort, bytes, direction) {
  var message = messageFor(fPort, direction), top = loadMap(bytes), order = [], readings = {}, warnings = [];
  var i, j, key, raw, spec, value, text;
  for (i = 0; i < top.keys.length; i++) { order.push(i); }
  order.sort(function (a, b) { return compareNonNegative(top.keys[a].s, top.keys[b].s); });
  for (i = 0; i < order.length; i++) {
    key = top.keys[order[i]].s;
    raw = top.values[order[i]];
    spec = null;
    for (j = 0; j < message.fields.length; j++) {
      if (String(message.fields[j].key) === key) { spec = message.fields[j]; }
    }
    if (spec === null) { warnings.push("unknown key " + key + " ignored"); continue; }
    if (!(spec.type === "bool" ? raw.t === "bool" :
          raw.t === "int" && (spec.type === "int" || raw.s.charAt(0) !== "-"))) {
      fail("bad_value_type", spec.name + " (key " + key + ") is " + PY_TYPES[raw.t] + " " + shortText(pyRepr(raw)) +
           ", not " + spec.type);
    }
    if (spec.type === "bool") {
      value = raw.v;
    } else {
      if (spec.divisor !== null) {
        value = intDividedByPowerOfTen(raw.s, String(spec.divisor).length - 1);
        text = pyFloat(value);
      } else {
        text = intTimes(raw.s, spec.multiplier);
        value = parseFloat(text);
      }
      if (value < spec.min || value > spec.max) {
        warnings.push(spec.name + " = " + text + (spec.unit ? " " + spec.unit : "") + " is out of range [" +
                      spec.minText + ", " + spec.maxText + "]");
      }
    }
    readings[spec.name] = {value: value, unit: spec.unit};
  }
  return {data: {kind: SCHEMA.kind, schema_version: SCHEMA.version, message: message.name, readings: readings,
                 warnings: warnings}, warnings: warnings};
}
function failure(error) {
  if (error instanceof PayloadError) { return {errors: [error.reason + ": " + error.detail], warnings: []}; }
  throw error;
}
function decodeWith(input, direction) {
  try {
    return decodePayload(input.fPort, input.bytes, direction);
  } catch (error) {
    return failure(error);
  }
}

/* CBOR encoder for downlinks: a canonical map of small int keys to ints and bools. */
function cborHead(out, major, n) {
  var i, high;
  if (n < 24) { out.push(major * 32 + n); return; }
  if (n < 256) { out.push(major * 32 + 24, n); return; }
  if (n < 65536) { out.push(major * 32 + 25, Math.floor(n / 256), n % 256); return; }
  if (n < 4294967296) {
    out.push(major * 32 + 26);
    for (i = 3; i >= 0; i--) { out.push(Math.floor(n / Math.pow(256, i)) % 256); }
    return;
  }
  high = Math.floor(n / 4294967296);
  out.push(major * 32 + 27);
  for (i = 3; i >= 0; i--) { out.push(Math.floor(high / Math.pow(256, i)) % 256); }
  for (i = 3; i >= 0; i--) { out.push(Math.floor((n % 4294967296) / Math.pow(256, i)) % 256); }
}
/* Python's round(): to the nearest int, ties to even. */
function roundHalfEven(x) {
  var floor = Math.floor(x), rest = x - floor;
  if (rest > 0.5) { return floor + 1; }
  if (rest < 0.5) { return floor; }
  return floor % 2 === 0 ? floor : floor + 1;
}
function jsPyType(value) {
  if (value === null || value === undefined) { return "NoneType"; }
  if (typeof value === "boolean") { return "bool"; }
  if (typeof value === "number") { return Math.floor(value) === value ? "int" : "float"; }
  if (typeof value === "string") { return "str"; }
  return Object.prototype.toString.call(value) === "[object Array]" ? "list" : "dict";
}
function jsPyRepr(value) {
  var parts = [], name, i;
  switch (jsPyType(value)) {
    case "NoneType": return "None";
    case "bool": return value ? "True" : "False";
    case "int": return String(value);
    case "float": return pyFloat(value);
    case "str": return pyStr(value);
    case "list":
      for (i = 0; i < value.length; i++) { parts.push(jsPyRepr(value[i])); }
      return "[" + parts.join(", ") + "]";
    default:
      for (name in value) {
        if (Object.prototype.hasOwnProperty.call(value, name)) {
          parts.push(pyStr(name) + ": " + jsPyRepr(value[name]));
        }
      }
      return "{" + parts.join(", ") + "}";
  }
}
function downlinkMessage(fPort) {
  var i, found = [];
  if (fPort !== undefined && fPort !== null) { return messageFor(fPort, "down"); }
  for (i = 0; i < SCHEMA.messages.length; i++) {
    if (SCHEMA.messages[i].direction === "down") { found.push(SCHEMA.messages[i]); }
  }
  if (found.length !== 1) {
    fail("unknown_message", SCHEMA.kind + " v" + SCHEMA.version + " has " + found.length +
         " downlink messages; give fPort");
  }
  return found[0];
}
function encodePayload(data, fPort) {
  var message = downlinkMessage(fPort), raws = {}, keys = [], out = [], name, spec, value, i, j;
  for (name in data) {
    if (!Object.prototype.hasOwnProperty.call(data, name)) { continue; }
    value = data[name];
    spec = null;
    for (j = 0; j < message.fields.length; j++) {
      if (message.fields[j].name === name) { spec = message.fields[j]; }
    }
    if (spec === null) { fail("unknown_field", message.name + " has no field " + pyStr(name)); }
    if (spec.type === "bool") {
      if (typeof value !== "boolean") { fail("bad_value_type", name + " is a bool, not " + jsPyType(value)); }
      raws[spec.key] = value;
    } else {
      if (typeof value !== "number" || !isFinite(value)) {
        fail("bad_value_type", name + " is a number, not " + shortText(jsPyRepr(value)));
      }
      if (value < spec.min || value > spec.max) {
        fail("out_of_range", name + " = " + jsPyRepr(value) + " is out of range [" + spec.minText + ", " +
             spec.maxText + "]");
      }
      raws[spec.key] = roundHalfEven(spec.divisor !== null ? value * spec.divisor : value / spec.multiplier);
    }
    if (keys.indexOf(spec.key) < 0) { keys.push(spec.key); }
  }
  keys.sort(function (a, b) { return a - b; });
  cborHead(out, 5, keys.length);
  for (i = 0; i < keys.length; i++) {
    cborHead(out, 0, keys[i]);
    value = raws[keys[i]];
    if (value === true || value === false) { out.push(value ? 0xF5 : 0xF4); }
    else if (value >= 0) { cborHead(out, 0, value); }
    else { cborHead(out, 1, -1 - value); }
  }
  return {bytes: out, fPort: message.fport, warnings: []};
}

/* The codec entry points of ChirpStack v4 and The Things Stack. */
function decodeUplink(input) { return decodeWith(input, "up"); }
function decodeDownlink(input) { return decodeWith(input, "down"); }
function encodeDownlink(input) {
  try {
    return encodePayload(input.data, input.fPort);
  } catch (error) {
    return failure(error);
  }
}
"""


def _js_field(spec: Field) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": spec.key, "name": spec.name, "type": spec.type, "unit": spec.unit}
    if spec.type == "bool":
        return entry
    for bound in (spec.min, spec.max):
        if abs(bound) >= _JS_EXACT_LIMIT:
            raise SchemaError("bad_range", f"{spec.name}: bound {bound} is not exact in JavaScript (|bound| < 2^53)")
    entry.update(divisor=spec.divisor, multiplier=spec.multiplier, min=spec.min, max=spec.max,
                 minText=str(spec.min), maxText=str(spec.max))
    return entry


def _js_table(schema: Schema) -> dict[str, Any]:
    return {
        "kind": schema.kind,
        "version": schema.version,
        "messages": [
            {"name": m.name, "fport": m.fport, "direction": m.direction, "fields": [_js_field(f) for f in m.fields]}
            for m in schema.messages
        ],
    }


def render_codec_js(schema: Schema, fmt: str) -> str:
    """The JavaScript codec of one node kind for `fmt` ("ttn" or "chirpstack")."""
    server = {"ttn": "The Things Stack", "chirpstack": "ChirpStack v4"}[fmt]
    table = json.dumps(_js_table(schema), ensure_ascii=True, indent=1)
    header = (
        f"/* DOS Edge payload codec for {server}: {schema.title} ({schema.kind}), payload schema v{schema.version}.\n"
        f" * Generated by `{GENERATOR_COMMAND} --format {fmt}` from codecs/schema/v{schema.version}/{schema.kind}.toml;"
        " edit that file, not this one.\n"
        " * decodeUplink({bytes, fPort}) -> {data: {kind, schema_version, message, readings: {name: {value, unit}},\n"
        " * warnings}, warnings} | {errors: [\"reason: detail\"], warnings: []}; decodeDownlink likewise;\n"
        " * encodeDownlink({data: {name: value}, fPort?}) -> {bytes, fPort, warnings} | {errors, warnings}. */\n"
    )
    return header + f"var SCHEMA = {table};\n" + _RUNTIME_JS


# --- the Python reference: the results the JavaScript must give -------------------------------------------------------


def decode_result(schema: Schema, fport: int, payload: bytes, direction: str = "up") -> dict[str, Any]:
    """What decodeUplink (direction "up") or decodeDownlink ("down") returns for `payload`, per the Python decoder."""
    try:
        decoded = schema.decode(fport, payload, direction)
    except PayloadError as exc:
        return {"errors": [f"{exc.reason}: {exc.detail}"], "warnings": []}
    data = {"kind": schema.kind, "schema_version": schema.version, "message": decoded.message,
            "readings": decoded.readings, "warnings": decoded.warnings}
    return {"data": data, "warnings": decoded.warnings}


def downlink_message(schema: Schema, fport: int | None = None) -> Message:
    """The downlink message on `fport`, or the kind's only downlink message when no FPort is given."""
    if fport is not None:
        return schema.message_for_fport(fport, "down")
    found = [m for m in schema.messages if m.direction == "down"]
    if len(found) != 1:
        raise PayloadError("unknown_message",
                           f"{schema.kind} v{schema.version} has {len(found)} downlink messages; give fPort")
    return found[0]


def encode_result(schema: Schema, data: dict[str, Any], fport: int | None = None) -> dict[str, Any]:
    """What encodeDownlink returns for `data`, per the Python encoder (Schema.encode)."""
    try:
        message = downlink_message(schema, fport)
        payload = schema.encode(message.name, data)
    except PayloadError as exc:
        return {"errors": [f"{exc.reason}: {exc.detail}"], "warnings": []}
    return {"bytes": list(payload), "fPort": message.fport, "warnings": []}


# --- examples ---------------------------------------------------------------------------------------------------------


def typical_value(spec: Field) -> int | float | bool:
    """A plausible in-range value of a field: the middle of its range at the field's resolution (True for bools)."""
    if spec.type == "bool":
        return True
    return spec.value_of(spec.raw_of((spec.min + spec.max) / 2))


def raw_payload(raw_map: dict[int, int | bool]) -> bytes:
    """Canonical CBOR of a {key: raw} map, for payloads the schema encoder refuses to build (out of range)."""
    return cbor2.dumps(dict(sorted(raw_map.items())), canonical=True)


def uplink_examples(schema: Schema) -> list[tuple[str, int, bytes]]:
    """(description, fport, payload) of example uplinks: per uplink message a normal one, one with a value past its
    range, one with an unknown key and one truncated; and one on an FPort the kind does not use."""
    examples = []
    for message in (m for m in schema.messages if m.direction == "up"):
        values = {spec.name: typical_value(spec) for spec in message.fields}
        raws = {spec.key: spec.raw_of(values[spec.name]) for spec in message.fields}
        normal = schema.encode(message.name, values)
        examples.append((f"{message.name}: normal values", message.fport, normal))
        numeric = [spec for spec in message.fields if spec.type != "bool"]
        if numeric:
            spec = numeric[0]
            past = {**raws, spec.key: spec.raw_of(spec.max) + 1}
            examples.append((f"{message.name}: {spec.name} above its range (warning)", message.fport,
                             raw_payload(past)))
        unknown_key = max(spec.key for spec in message.fields) + 1
        examples.append((f"{message.name}: unknown key {unknown_key} (warning)", message.fport,
                         raw_payload({**raws, unknown_key: 1})))
        examples.append((f"{message.name}: truncated CBOR (error)", message.fport, normal[:-1]))
    used = {m.fport for m in schema.messages if m.direction == "up"}
    unused = min(port for port in range(1, 224) if port not in used)
    first = next(m for m in schema.messages if m.direction == "up")
    examples.append((f"unknown FPort {unused} (error)", unused, schema.encode(first.name, {})))
    return examples


def downlink_examples(schema: Schema) -> list[tuple[str, dict[str, Any], int]]:
    """(description, data, fport) of example downlinks: per downlink message normal values, a value past its range
    and an unknown field."""
    examples = []
    for message in (m for m in schema.messages if m.direction == "down"):
        values = {spec.name: typical_value(spec) for spec in message.fields}
        examples.append((f"{message.name}: normal values", values, message.fport))
        numeric = [spec for spec in message.fields if spec.type != "bool"]
        if numeric:
            spec = numeric[0]
            examples.append((f"{message.name}: {spec.name} above its range (error)",
                             {**values, spec.name: spec.max + 1}, message.fport))
        examples.append((f"{message.name}: unknown field (error)", dict(values, no_such_field=1), message.fport))
    return examples


def _yaml_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _yaml_mapping(items: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}{name}: {_yaml_value(value)}" for name, value in items.items()]


def render_examples_yaml(schema: Schema, js_file: str) -> str:
    """TTS-Device-Repository-style codec examples of one kind (JSON-compatible YAML values); the outputs are the
    Python decoder's and encoder's."""
    lines = [f"# DOS Edge codec examples: {schema.title} ({schema.kind}), payload schema v{schema.version}.",
             f"# Generated by `{GENERATOR_COMMAND} --format ttn`; outputs are those of the DOS Edge Python codec.",
             "uplinkDecoder:", f"  fileName: {js_file}", "  examples:"]
    for description, fport, payload in uplink_examples(schema):
        lines += [f"    - description: {_yaml_value(description)}", "      input:"]
        lines += _yaml_mapping({"fPort": fport, "bytes": list(payload)}, 8)
        lines += ["      output:"] + _yaml_mapping(decode_result(schema, fport, payload), 8)
    encoder_lines = ["downlinkEncoder:", f"  fileName: {js_file}", "  examples:"]
    decoder_lines = ["downlinkDecoder:", f"  fileName: {js_file}", "  examples:"]
    for description, data, fport in downlink_examples(schema):
        result = encode_result(schema, data, fport)
        encoder_lines += [f"    - description: {_yaml_value(description)}", "      input:"]
        encoder_lines += _yaml_mapping({"data": data, "fPort": fport}, 8)
        encoder_lines += ["      output:"] + _yaml_mapping(result, 8)
        if "bytes" in result:
            payload = bytes(result["bytes"])
            decoder_lines += [f"    - description: {_yaml_value(description)}", "      input:"]
            decoder_lines += _yaml_mapping({"fPort": fport, "bytes": list(payload)}, 8)
            decoder_lines += ["      output:"] + _yaml_mapping(decode_result(schema, fport, payload, "down"), 8)
    return "\n".join(lines + encoder_lines + decoder_lines) + "\n"


def render_chirpstack_readme(kinds: list[str], version: int) -> str:
    """The README listing the ChirpStack codec files."""
    lines = [f"# DOS Edge payload codecs for ChirpStack v4 (payload schema v{version})", "",
             f"Generated by `{GENERATOR_COMMAND} --format chirpstack` from codecs/schema/v{version}/; regenerate,",
             "do not edit. Paste a file into the device profile's codec (JavaScript functions).", "",
             "- `decodeUplink({bytes, fPort})` gives `{data: {kind, schema_version, message, readings: {name: {value,",
             "  unit}}, warnings}, warnings}`: the warnings (unknown key, value out of range) are also inside `data`,",
             "  so they reach the uplink event's `object`.",
             "- A payload that does not decode gives `{errors: [\"reason: detail\"]}` with the DOS Edge agent's",
             "  reasons (bad_cbor, trailing_bytes, not_a_map, bad_key, bad_value_type, unknown_fport).",
             "- `encodeDownlink({data: {name: value}, fPort?})` gives `{bytes, fPort}`, the CBOR payload of the node.",
             "", "Files:", ""]
    for kind in kinds:
        schema = load_schema(kind, version)
        ports = ", ".join(f"{m.name} on FPort {m.fport} ({m.direction})" for m in schema.messages)
        lines.append(f"- `{kind}.js`: {schema.title}: {ports}")
    return "\n".join(lines) + "\n"


def export_codecs(fmt: str, out: str | os.PathLike[str], version: int = 1) -> list[Path]:
    """Write the codec files of every node kind at `version` into `out` (created if missing); the written paths."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = available_kinds(version)
    written = []
    for kind in kinds:
        schema = load_schema(kind, version)
        js_path = folder / f"{kind}.js"
        js_path.write_text(render_codec_js(schema, fmt), encoding="utf-8")
        written.append(js_path)
        if fmt == "ttn":
            yaml_path = folder / f"{kind}.yaml"
            yaml_path.write_text(render_examples_yaml(schema, js_path.name), encoding="utf-8")
            written.append(yaml_path)
    if fmt == "chirpstack":
        readme = folder / "README.md"
        readme.write_text(render_chirpstack_readme(kinds, version), encoding="utf-8")
        written.append(readme)
    return written

