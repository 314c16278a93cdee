"""Generation: a tiny real StableUnCLIPImg2ImgPipeline and the bundles' own EmbeddingToImagePipeline, built and run on CPU."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from wavbrivl.cli import main
from wavbrivl.embedding_to_image import EmbeddingToImageTrainConfig, train_embedding_to_image
from wavbrivl.generate import Generator, blend_embeddings
from wavbrivl.testing import tiny_unclip

from .conftest import tone, write_wav


@pytest.fixture(scope="module")
def unclip_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("unclip")
    tiny_unclip(d).save_pretrained(d / "pipe", safe_serialization=True)
    return d / "pipe"


def test_unclip_backend_generates_reproducibly(unclip_dir):
    gen = Generator.from_pretrained(unclip_dir, space_id="test/space", embed_norm=12.0, device="cpu")
    assert gen.kind == "StableUnCLIPImg2ImgPipeline" and gen.embed_dim == 32
    emb = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(1)), dim=0)
    steps = []
    a = gen.generate(emb, space_id="test/space", seed=0, steps=2, height=32, width=32, progress=lambda i, n: steps.append((i, n)))
    b = gen.generate(emb, space_id="test/space", seed=0, steps=2, height=32, width=32)
    c = gen.generate(-emb, space_id="test/space", seed=0, steps=2, height=32, width=32, prompt="red dog")
    assert len(a) == 1 and isinstance(a[0], Image.Image) and a[0].size == (32, 32)
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
    assert steps == [(1, 2), (2, 2)]


def test_generator_refuses_other_spaces(unclip_dir):
    gen = Generator.from_pretrained(unclip_dir, space_id="test/space", device="cpu")
    with pytest.raises(ValueError, match="consumes 'test/space' embeddings \\(32-d\\) but was given 'ViT-B-32/openai'"):
        gen.generate(torch.randn(32), space_id="ViT-B-32/openai", steps=1)
    with pytest.raises(ValueError, match="64-d"):
        gen.generate(torch.randn(64), space_id="test/space", steps=1)


def test_unavailable_generator_says_how_to_run_offline(tmp_path):
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        Generator.from_pretrained("stabilityai/stable-diffusion-2-1-unclip", local_files_only=True)
    with pytest.raises(RuntimeError, match="model_index.json"):
        Generator.from_pretrained(tmp_path)


def test_blend_embeddings():
    a, t = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    mix = blend_embeddings({"audio": (a, 0.5), "text": (t, 0.5)})
    assert torch.allclose(mix, torch.tensor([[0.7071, 0.7071, 0]]), atol=1e-4)
    assert torch.allclose(blend_embeddings({"audio": (a, 1.0), "text": (t, 0.0)}), a[None])
    with pytest.raises(ValueError):
        blend_embeddings({"audio": (a, 0.0)})


def train_generator(images, emb, **options):
    return train_embedding_to_image(images, emb, EmbeddingToImageTrainConfig(progress=False, **options))


def coloured_squares(n):
    colours = [(220, 30, 30), (30, 30, 220)]
    images, labels = [], []
    for i in range(n):
        img = np.full((16, 16, 3), 128, np.uint8)
        img[4:12, 4:12] = colours[i % 2]
        images.append(Image.fromarray(img))
        labels.append(i % 2)
    emb = torch.zeros(n, 8)
    emb[torch.arange(n), torch.tensor(labels)] = 1
    return images, emb


def test_embedding_to_image_backend_trains_saves_and_loads(tmp_path):
    images, emb = coloured_squares(16)
    pipe, losses = train_generator(images, emb, steps=30, batch_size=8, sample_size=16, channels=(8, 16))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    gen = Generator(pipe, space_id="toy/space", embed_dim=8)
    gen.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g", device="cpu")
    assert loaded.kind == "EmbeddingToImagePipeline" and loaded.space_id == "toy/space"
    # The conditioning scale and the clean-picture parameterisation travel with the saved pipeline.
    assert loaded.pipeline.config.embed_scale == pytest.approx(8**0.5)
    assert loaded.pipeline.scheduler.config.prediction_type == "sample"
    assert loaded.pipeline.unet.config.resnet_time_scale_shift == "scale_shift"
    assert loaded.pipeline.config.guidance_scale == 1.0  # a clean-picture predictor is not guided by default
    with pytest.raises(ValueError, match="prediction_type"):
        train_generator(images[:2], emb[:2], steps=1, prediction_type="x0")
    a = gen.generate(emb[0], space_id="toy/space", seed=3, steps=3)
    b = loaded.generate(emb[0], space_id="toy/space", seed=3, steps=3)
    c = loaded.generate(emb[1], space_id="toy/space", seed=3, steps=3)
    assert a[0].size == (16, 16)
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
    with pytest.raises(ValueError, match="toy/space"):
        loaded.generate(emb[0], space_id="other", steps=1)


def test_patched_averaged_stochastic_generator_round_trips(tmp_path):
    """patch_size folds pixel blocks into channels (the UNet runs at half size, the picture comes back whole);
    EMA weights are what is saved; eta is stored as the default and can be overridden per call."""
    images, emb = coloured_squares(16)
    pipe, losses = train_generator(images, emb, steps=30, batch_size=8, sample_size=16, channels=(16, 32),
                                             patch_size=2, ema_decay=0.99, eta=1.0)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert pipe.unet.config.sample_size == 8 and pipe.unet.config.in_channels == 12
    gen = Generator(pipe, space_id="toy/space", embed_dim=8)
    gen.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g", device="cpu")
    assert loaded.pipeline.config.patch_size == 2 and loaded.pipeline.config.eta == 1.0
    for a, b in zip(pipe.unet.state_dict().values(), loaded.pipeline.unet.state_dict().values()):
        assert torch.equal(a, b)
    x = loaded.generate(emb[0], space_id="toy/space", seed=5, steps=4)
    y = loaded.generate(emb[0], space_id="toy/space", seed=5, steps=4)
    assert x[0].size == (16, 16)
    assert np.array_equal(np.asarray(x[0]), np.asarray(y[0]))  # stochastic sampling is still seeded
    deterministic = loaded.pipeline(emb[:1], num_inference_steps=4,
                                    generator=torch.Generator().manual_seed(5), eta=0.0).images
    assert not np.array_equal(np.asarray(x[0]), np.asarray(deterministic[0]))
    with pytest.raises(ValueError, match="patch_size"):
        train_generator(images[:2], emb[:2], steps=1, sample_size=15, patch_size=2)


def test_retrieved_references_start_the_picture_and_travel_with_the_pipeline(tmp_path):
    """With references, a picture starts from the drawing nearest its condition, noised part-way (SDEdit), and
    only the rest of the schedule runs; the references are saved beside the pipeline (PNG sheet + embeddings)
    and can be switched off."""
    from wavbrivl.embedding_to_image import References

    images, emb = coloured_squares(4)
    pipe, _ = train_generator(images, emb, steps=2, batch_size=4, sample_size=16, channels=(8, 16), patch_size=2)
    pixels = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images[:2]])
    pipe.set_references(pixels, emb[:2], strength=0.2)
    assert pipe.config.retrieval_strength == 0.2
    # The drawing nearest each condition is the one a picture starts from ...
    assert torch.equal(pipe.references.nearest(emb[[1, 0, 3]]), pixels[[1, 0, 1]].float() / 127.5 - 1)
    steps: list[int] = []
    out = pipe(emb[[1, 0]], num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="np",
               callback_on_step_end=lambda _p, i, _t, kw: steps.append(i) or kw)
    assert len(steps) == 2  # ... noised to 20 % of the schedule: only the last 2 of 10 steps run
    Generator(pipe, space_id="toy/space", embed_dim=8).save_pretrained(tmp_path / "g")
    assert References.exists(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g", device="cpu").pipeline
    assert torch.equal(loaded.references.pixels, pixels) and loaded.config.retrieval_strength == 0.2
    again = loaded(emb[[1, 0]], num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="np")
    assert np.array_equal(out, again)
    loaded.use_references = False  # plain generation: every step, from noise
    steps.clear()
    plain = loaded(emb[[1, 0]], num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="np",
                   callback_on_step_end=lambda _p, i, _t, kw: steps.append(i) or kw)
    assert len(steps) == 10 and not np.array_equal(out, plain)
    with pytest.raises(ValueError, match="uint8"):
        References(pixels.float(), emb[:2])


def test_min_snr_weighting_spends_the_loss_on_the_middle_noise_levels():
    """Min-SNR weights are at most 1, cap the cleanest steps and fade out the noisiest ones; training with
    them still learns."""
    from diffusers import DDPMScheduler

    from wavbrivl.embedding_to_image import min_snr_weight

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    t = torch.tensor([0, 100, 500, 900, 999])
    w = min_snr_weight(sched, t, 5.0, "sample")
    assert torch.all(w <= 1) and w[0] == 1 and w[1] == 1
    assert w[4] < w[3] < w[2] < 1
    eps_w = min_snr_weight(sched, t, 5.0, "epsilon")
    assert eps_w[0] < 1e-3 and torch.allclose(eps_w[3:], torch.ones(2))
    images, emb = coloured_squares(8)
    _, losses = train_generator(images, emb, steps=30, batch_size=8, sample_size=16, channels=(8, 16),
                                          snr_gamma=5.0)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_jittered_conditions_keep_their_length_and_stay_near_their_point():
    """Noise augmentation of the condition (as Stable unCLIP does with its image embeddings): each row keeps
    its length and moves by its own random amount, up to a cosine of about 0.71 at level 1; level 0 is a
    no-op; training with it still learns, and a negative level is refused."""
    from wavbrivl.embedding_to_image import jitter_condition

    c = torch.nn.functional.normalize(torch.randn(4000, 64, generator=torch.Generator().manual_seed(0)), dim=-1) * 8
    moved = jitter_condition(c, 1.0, torch.Generator().manual_seed(1))
    assert torch.allclose(moved.norm(dim=-1), c.norm(dim=-1), atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(moved, c, dim=-1)
    assert 0.85 < float(cos.mean()) < 0.91 and float(cos.quantile(0.01)) > 0.6 and float(cos.max()) > 0.999
    assert torch.allclose(jitter_condition(c, 0.0, torch.Generator().manual_seed(1)), c, atol=1e-5)
    images, emb = coloured_squares(8)
    _, losses = train_generator(images, emb, steps=30, batch_size=8, sample_size=16, channels=(8, 16),
                                          cond_noise=1.0)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    with pytest.raises(ValueError, match="cond_noise"):
        train_generator(images, emb, steps=1, sample_size=16, cond_noise=-0.5)


def test_concurrent_calls_are_serialised(tmp_path):
    images, emb = coloured_squares(4)
    pipe, _ = train_generator(images, emb, steps=2, batch_size=4, sample_size=16, channels=(8, 16))
    gen = Generator(pipe, space_id="toy/space", embed_dim=8)
    results, errors = [], []

    def worker(seed):
        try:
            results.append(np.asarray(gen.generate(emb[0], space_id="toy/space", seed=seed, steps=2)[0]))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    same = sum(np.array_equal(x, y) for i, x in enumerate(results) for y in results[i + 1 :])
    assert same == 1  # the two seed-1 calls agree exactly: no interference between concurrent calls


def test_generate_cli(tiny_model, tmp_path):
    ckpt = tiny_model.save_pretrained(tmp_path / "ckpt")
    images, _ = coloured_squares(8)
    emb = tiny_model.embed_image(images)
    pipe, _ = train_generator(images, emb, steps=3, batch_size=4, sample_size=16, channels=(8, 16))
    Generator(pipe, space_id=tiny_model.backbone_id, embed_dim=tiny_model.embed_dim).save_pretrained(ckpt / "generator")
    audio = write_wav(tmp_path / "a.wav", tone(440, 1.0) + 0.01)
    out = tmp_path / "out.png"
    assert main(["generate", "--checkpoint", str(ckpt), "--audio", str(audio), "--prompt", "a red square",
                 "--mix", "0.3", "--out", str(out), "--seed", "0", "--steps", "2"]) == 0
    assert Image.open(out).size == (16, 16)
    assert main(["generate", "--checkpoint", str(ckpt), "--audio", str(audio), "--mix", "1.5", "--out", str(out)]) == 1
    no_prompt = ["generate", "--checkpoint", str(ckpt), "--audio", str(audio), "--mix", "0.5", "--out", str(out)]
    assert main(no_prompt) == 1
