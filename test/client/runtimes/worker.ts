/** A Worker that runs the client smoke scenario: POST its input as JSON, get its report; any GET answers ready. */
import { clientSmoke } from "./scenario.js";

export default {
  async fetch(request: Request): Promise<Response> {
    if (request.method !== "POST") return new Response("ready");
    return Response.json(await clientSmoke(await request.json()));
  },
};
