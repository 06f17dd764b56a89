import pytest

from geomcheck.capture.sites import BLOCK_POINTS, Point, Site, all_sites, select_sites
from geomcheck.errors import SiteError


def test_names_round_trip():
    for site in all_sites(3, learned_positions=True):
        assert Site.parse(site.name) == site


def test_parse_block_site():
    assert Site.parse("blocks.12.attn_out") == Site(12, Point.ATTN_OUT)


@pytest.mark.parametrize("bad", ["blocks.x.attn_out", "blocks.1.attention", "resid_post", "blocks.1", "", "embed.0"])
def test_parse_rejects_bad_names_with_the_valid_ones(bad):
    with pytest.raises(SiteError, match="blocks.<i>.<point>"):
        Site.parse(bad)


def test_all_sites_order_and_count():
    sites = all_sites(30, learned_positions=False)
    assert len(sites) == 30 * len(BLOCK_POINTS) + 2
    assert sites[0].name == "embed" and sites[-1].name == "final_norm"
    assert all_sites(2, learned_positions=True)[1].name == "pos_embed"


def test_glob_selection_keeps_forward_order():
    sites = all_sites(4, learned_positions=False)
    chosen = select_sites(sites, ["blocks.*.mlp_out", "blocks.[12].attn_out"])
    assert [s.name for s in chosen] == [
        "blocks.0.mlp_out",
        "blocks.1.attn_out",
        "blocks.1.mlp_out",
        "blocks.2.attn_out",
        "blocks.2.mlp_out",
        "blocks.3.mlp_out",
    ]


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(SiteError, match=r"'blocks\.\*\.atn_out' matches no site"):
        select_sites(all_sites(2, learned_positions=False), ["blocks.*.atn_out"])
