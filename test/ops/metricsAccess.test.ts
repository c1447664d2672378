/** Who may read /metrics on the API listener: anyone in development, the token holder with METRICS_TOKEN, nobody in production without one. */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase } from "../helpers/context.js";

const db = testDatabase();
afterAll(() => db.close());

const METRICS_TOKEN = "metrics-token-0123456789";
/** Production needs a database URL and an auth mode; the URL is only validated here, never opened. */
const PRODUCTION = { NODE_ENV: "production", DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres" };

const scrape = (app: ReturnType<typeof testApp>["app"], token?: string) =>
  app.request("/metrics", token === undefined ? {} : { headers: { Authorization: `Bearer ${token}` } });

describe("GET /metrics on the API listener", () => {
  it("is public outside production without a token or a metrics port", async () => {
    expect((await scrape(testApp(db).app)).status).toBe(200);
  });

  it("is not served in production without METRICS_TOKEN", async () => {
    const res = await scrape(testApp(db, PRODUCTION).app);
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain("http_requests_total");
  });

  it("is not served when METRICS_PORT moves it to a listener of its own", async () => {
    expect((await scrape(testApp(db, { METRICS_PORT: "9464" }).app)).status).toBe(404);
  });

  it("answers only the METRICS_TOKEN bearer when one is set, in production too", async () => {
    for (const env of [{ METRICS_TOKEN }, { ...PRODUCTION, METRICS_TOKEN }]) {
      const { app } = testApp(db, env);
      for (const wrong of [undefined, "nope", `${METRICS_TOKEN}x`]) {
        const res = await scrape(app, wrong);
        expect(res.status).toBe(401);
        expect((await res.json()).error).toBe("AuthenticationRequired");
      }
      const res = await scrape(app, METRICS_TOKEN);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("http_requests_total");
    }
  });
});
