"""Parity of the vision side (preprocessing, UMT tower, ToMe projector) with the published VideoChat-Flash.

Reference data: shared/fixtures/videochat_flash_tiny (published code, tiny random weights, seed 1234).
"""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xcomp.vision.config import UMTVisionConfig
from xcomp.vision.processor import preprocess_frames
from xcomp.vision.tome import ToMeProjector, bipartite_soft_matching, merge_schedule, merge_tokens
from xcomp.vision.umt import UMTVisionTower

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURE = SHARED / "fixtures" / "videochat_flash_tiny"
KEYS_FILE = SHARED / "reference" / "videochat_flash_2b_state_dict_keys.txt"
TOWER_PREFIX = "model.vision_tower.vision_tower."
PROJECTOR_PREFIX = "model.mm_projector."

if not (FIXTURE / "outputs.safetensors").exists():
    pytest.skip(f"parity fixture not found at {FIXTURE}", allow_module_level=True)


def strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


@pytest.fixture(scope="module")
def weights():
    return load_file(FIXTURE / "model.safetensors")


@pytest.fixture(scope="module")
def inputs():
    return load_file(FIXTURE / "inputs.safetensors")


@pytest.fixture(scope="module")
def outputs():
    return load_file(FIXTURE / "outputs.safetensors")


@pytest.fixture(scope="module")
def tower(weights):
    model = UMTVisionTower(UMTVisionConfig.tiny()).eval()
    model.load_state_dict(strip(weights, TOWER_PREFIX), strict=True)
    return model


@pytest.fixture(scope="module")
def projector(weights):
    model = ToMeProjector(mm_hidden_size=128, hidden_size=64).eval()
    model.load_state_dict(strip(weights, PROJECTOR_PREFIX), strict=True)
    return model


@pytest.fixture(scope="module")
def features(tower, inputs):
    with torch.no_grad():
        return tower(inputs["pixel_values"])


def test_pos_embed_matches_fixture(tower, outputs):
    assert max_diff(tower.encoder.pos_embed.table, outputs["vision_pos_embed"]) <= 1e-6


def test_pos_embed_not_in_state_dict(tower):
    assert not any("pos_embed" in k for k in tower.state_dict())


def test_preprocess_matches_pixel_values(inputs):
    pixels = preprocess_frames(inputs["frames_uint8"].numpy(), size=448)
    assert pixels.dtype == torch.float32
    assert max_diff(pixels, inputs["pixel_values"]) <= 1e-6


def test_vision_features_match_fixture(features, outputs):
    assert max_diff(features, outputs["vision_features"]) <= 1e-5


def test_clip_batching_does_not_change_features(tower, inputs, features):
    with torch.no_grad():
        one_clip_at_a_time = tower(inputs["pixel_values"], clip_batch_size=1)
    assert max_diff(one_clip_at_a_time, features) <= 1e-6


def test_tome_indices_match_fixture(projector, outputs):
    trace = []
    with torch.no_grad():
        projector(outputs["vision_features"], trace=trace)
    num_steps = len([k for k in outputs if re.fullmatch(r"tome_step\d+_edge_idx", k)])
    assert len(trace) == num_steps
    for step, (edge_idx, node_idx) in enumerate(trace):
        assert torch.equal(node_idx, outputs[f"tome_step{step}_node_idx"]), f"node_idx differs at step {step}"
        assert torch.equal(edge_idx, outputs[f"tome_step{step}_edge_idx"]), f"edge_idx differs at step {step}"


def test_projector_out_matches_fixture(projector, outputs):
    with torch.no_grad():
        out = projector(outputs["vision_features"])
    assert max_diff(out, outputs["projector_out"]) <= 1e-5


def test_tower_then_projector_matches_fixture(projector, features, outputs):
    with torch.no_grad():
        out = projector(features)
    assert max_diff(out, outputs["projector_out"]) <= 1e-5


def test_merge_schedule_matches_fixture_steps(outputs):
    """Each step's edge_idx has one entry per even token, i.e. half the tokens entering that step."""
    tokens, target = 4 * 784, 64
    for step, r in enumerate(merge_schedule(tokens, target)):
        assert outputs[f"tome_step{step}_edge_idx"].shape[1] == (tokens + 1) // 2
        tokens -= r
    assert tokens == target


@pytest.mark.parametrize("num_tokens", [65, 100, 127, 128, 129, 4 * 49, 4 * 196, 4 * 784])
def test_merge_tokens_reaches_target(num_tokens):
    remaining = num_tokens
    for r in merge_schedule(num_tokens, 64):
        assert 0 < r <= remaining // 2
        remaining -= r
    assert remaining == 64
    assert merge_tokens(torch.randn(2, num_tokens, 32), 64, num_heads=16).shape == (2, 64, 32)


def test_merge_preserves_size_weighted_mean():
    """A size-weighted average keeps the mean over the original tokens."""
    x = torch.randn(3, 300, 16, dtype=torch.float64)
    size = torch.ones_like(x[..., :1])
    merged, size, _, _ = bipartite_soft_matching(x, size, x, 120)
    assert merged.shape[1] == 180 and size.sum(1).eq(300).all()
    assert torch.allclose((merged * size).sum(1) / 300, x.mean(1))


def test_forward_rejects_partial_clip(tower):
    with pytest.raises(ValueError, match="multiple of num_frames"):
        tower(torch.zeros(3, 3, 448, 448))


def test_gradient_checkpointing_same_grads():
    torch.manual_seed(0)
    model = UMTVisionTower(UMTVisionConfig.tiny(image_size=64, hidden_size=32)).train()
    pixels = torch.randn(4, 3, 64, 64)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        model(pixels).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def read_published_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _ = line.split("\t")
        shapes[key] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return shapes


@pytest.mark.skipif(not KEYS_FILE.exists(), reason=f"published key list not found at {KEYS_FILE}")
def test_real_size_builds_on_meta_with_published_shapes():
    published = read_published_shapes()
    with torch.device("meta"):
        tower = UMTVisionTower(UMTVisionConfig())
        projector = ToMeProjector(mm_hidden_size=1024, hidden_size=1536)
    for module, prefix in ((tower, TOWER_PREFIX), (projector, PROJECTOR_PREFIX)):
        ours = {k: tuple(p.shape) for k, p in module.named_parameters()}
        assert ours == strip(published, prefix)
        assert all(p.is_meta for p in module.parameters())
    assert len(tower.encoder.blocks) == 23
    assert not tower.encoder.pos_embed.table.is_meta and tower.encoder.pos_embed.table.shape == (1, 4 * 784, 1024)

    tower_params = sum(p.numel() for p in tower.parameters())
    projector_params = sum(p.numel() for p in projector.parameters())
    published_tower = sum(torch.Size(s).numel() for s in strip(published, TOWER_PREFIX).values())
    print(f"UMT-L (23 blocks): {tower_params:,} params; tome16_mlp_hd64: {projector_params:,} params")
    assert tower_params == published_tower
    assert 0.28e9 < tower_params < 0.31e9
