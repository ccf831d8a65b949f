"""Request bodies shared by unit and integration tests."""

# Segmind's sample request from its model page (all 14 fields), as a Segmind client sends it.
SEGMIND_SAMPLE = {
    "prompt": "a majestic lion in the savannah, golden hour, photorealistic",
    "negative_prompt": "low quality, blurry",
    "steps": 4,
    "guidance_scale": 1,
    "seed": 98552302,
    "sampler": "dpmpp_2m",
    "scheduler": "sgm_uniform",
    "width": 1024,
    "height": 1024,
    "aspect_ratio": "custom",
    "batch_size": 1,
    "image_format": "jpeg",
    "image_quality": 95,
    "base64": False,
}
