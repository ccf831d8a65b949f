// Vercel's AI SDK (generateImage, with its OpenAI-compatible provider) against the gateway, with two models;
// prints one JSON line. Usage: node ai-sdk.mjs <base URL ending in /v1> <api key> <prompt>
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateImage } from "ai";

const [baseURL, apiKey, prompt] = process.argv.slice(2);
const gateway = createOpenAICompatible({ name: "gateway", baseURL, apiKey });

// A model's own fields (a seed, a negative prompt) go as provider options, which the provider sends in the body.
async function generate(model, options) {
  const result = await generateImage({ model: gateway.imageModel(model), prompt, maxRetries: 0, ...options });
  return {
    media_types: result.images.map((image) => image.mediaType),
    magic: result.images.map((image) => Buffer.from(image.uint8Array).subarray(0, 4).toString("hex")),
    cache: result.responses.map((response) => response.headers?.["x-cache"]),
    seed: result.responses[0].headers?.["x-seed-value"],
  };
}

const flux = await generate("flux-1-dev", { n: 2, size: "1024x576", providerOptions: { gateway: { seed: 7 } } });
const sd35 = await generate("stable-diffusion-3.5-turbo", {
  size: "256x256",
  providerOptions: { gateway: { negative_prompt: "text", seed: 8 } },
});
const again = await generate("stable-diffusion-3.5-turbo", {
  size: "256x256",
  providerOptions: { gateway: { negative_prompt: "text", seed: 8 } },
});
let refused = null;
try {
  await generate("flux-1-schnell", { n: 2 });
} catch (error) {
  refused = { name: error.name, status: error.statusCode, message: error.message };
}
console.log(JSON.stringify({ flux, sd35, again, refused }));
