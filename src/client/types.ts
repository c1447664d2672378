import type { z } from "zod";
import type { MessageView } from "../services/messages.js";
import type { JsonMethodName, Methods } from "./methods.js";

/** A wire value with its `{"$bytes": base64}` objects read as bytes. */
export type FromWire<T> = T extends { $bytes: string }
  ? Uint8Array
  : T extends readonly (infer E)[]
    ? FromWire<E>[]
    : T extends object
      ? { [K in keyof T]: FromWire<T[K]> }
      : T;

type Schema<N extends keyof Methods> = Methods[N]["input"];

/**
 * What a caller gives: the keys of the schema's input (optional where the server has a default or none), each
 * with the schema's parsed type: numbers for epochs and limits, Uint8Array for bytes.
 */
export type Input<N extends keyof Methods> = {
  [K in keyof z.input<Schema<N>>]: K extends keyof z.output<Schema<N>> ? z.output<Schema<N>>[K] : never;
};

/** The handler's answer; getMessages answers JSON text the database built, a page of the server's MessageView. */
type WireOutput<N extends JsonMethodName> = N extends "getMessages"
  ? { messages: MessageView[]; cursor?: string }
  : Exclude<Awaited<ReturnType<Methods[N]["handler"]>>, Response>;

export type Output<N extends JsonMethodName> = FromWire<WireOutput<N>>;

/** A successful answer. */
export interface Answer<T> {
  data: T;
  status: number;
  /** The server answered from its idempotency record (`Idempotent-Replayed: true`): an earlier attempt did the work. */
  replayed: boolean;
  /** The key the call was made with (procedures). */
  idempotencyKey?: string;
  requestId?: string;
}
