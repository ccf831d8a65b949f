// The openai npm package's images.generate against the gateway, in both response formats; prints one JSON line.
// Usage: node generate.mjs <base URL ending in /v1> <api key> <prompt>
import OpenAI from "openai";

const [baseURL, apiKey, prompt] = process.argv.slice(2);
const client = new OpenAI({
  baseURL,
  apiKey,
  maxRetries: 0,
});

const b64 = await client.images.generate({ model: "stable-diffusion-3.5-turbo", prompt, size: "256x256", n: 2 });
const url = await client.images.generate({ prompt, size: "256x256", response_format: "url", seed: 5 });
let refused = null;
try {
  await client.images.generate({ prompt, size: "9999x256" });
} catch (error) {
  refused = { status: error.status, param: error.param, type: error.type, name: error.constructor.name };
}
console.log(
  JSON.stringify({
    b64: b64.data.map((item) => Buffer.from(item.b64_json, "base64").subarray(0, 3).toString("hex")),
    b64_format: b64.output_format,
    size: b64.size,
    urls: url.data.map((item) => item.url),
    refused,
  }),
);
