"""Carbon: a user's energy becomes grams of CO2e for a named location, never for a guessed one."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wattprof.analysis.carbon import (
    AWS_REGIONS,
    carbon_for,
    co2_g,
    codecarbon_intensity,
    per_million_tokens,
    resolve_intensity,
)
from wattprof.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _codecarbon_file(relpath: str) -> dict:
    """Read one of codecarbon's packaged data files, independently of the module under test."""
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None and spec.submodule_search_locations
    root = Path(list(spec.submodule_search_locations)[0])
    return json.loads((root / relpath).read_text())


def test_aws_us_east_1_is_virginia_with_aws_pue_computed_by_hand():
    usa = _codecarbon_file("data/private_infra/2023/usa_emissions.json")
    assert usa["_unit"]["emissions"] == "lbs/MWh"
    g_per_kwh = usa["virginia"]["emissions"] * 453.59237 / 1000  # lb/MWh -> g/kWh
    energy_j = 7.2e6  # 2 kWh measured at the GPUs

    ctx = resolve_intensity(region="aws:us-east-1")
    result = carbon_for(energy_j, ctx)

    assert ctx.pue == 1.15
    assert ctx.pue_source == "AWS-reported 2023/2024 PUE 1.15"
    assert result.energy_kwh == pytest.approx(2.0)
    assert result.facility_kwh == pytest.approx(2.3)
    assert result.g_co2e == pytest.approx(2.0 * 1.15 * g_per_kwh)
    assert result.g_co2e == pytest.approx(563.0, abs=0.1)  # 2.3 kWh x 244.76 g/kWh
    assert result.intensity.location == "USA/virginia (aws:us-east-1)"
    assert result.intensity.source.endswith("offline data: data/private_infra/2023/usa_emissions.json")
    assert result.intensity.source.startswith("codecarbon 3.")
    assert result.intensity.year == "2023"
    assert result.intensity.basis == "location-based"
    assert result.car_miles == pytest.approx(result.g_co2e / 400.0)
    assert result.car_km == pytest.approx(result.car_miles * 1.609344)


def test_country_fra_uses_the_global_energy_mix_and_no_pue_by_default():
    mix = _codecarbon_file("data/private_infra/global_energy_mix.json")
    g_per_kwh = mix["FRA"]["carbon_intensity"]
    assert round(g_per_kwh, 1) == 56.0

    ctx = resolve_intensity(country="fra")
    result = carbon_for(36e6, ctx)  # 10 kWh

    assert ctx.pue == 1.0
    assert ctx.pue_source == "1.0 (not data-centre adjusted; pass --pue)"
    assert result.facility_kwh == pytest.approx(10.0)
    assert result.g_co2e == pytest.approx(10.0 * g_per_kwh)
    assert result.intensity.location == "FRA"
    assert result.intensity.source.endswith("data/private_infra/global_energy_mix.json")
    assert result.intensity.year == str(mix["FRA"]["year"])


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("aws:us-east-1", 244.8),
        ("aws:us-east-2", 484.6),
        ("aws:us-west-2", 165.5),
        ("aws:eu-west-1", 290.8),
        ("aws:eu-central-1", 380.9),
        ("aws:ap-south-1", 713.4),
    ],
)
def test_aws_regions_reproduce_the_reference_intensities(region, expected):
    ctx = resolve_intensity(region=region)
    assert ctx.intensity.g_per_kwh == pytest.approx(expected, abs=0.06)


def test_every_aws_region_in_the_table_resolves():
    for name in AWS_REGIONS:
        ctx = resolve_intensity(region=f"aws:{name}")
        assert ctx.intensity.g_per_kwh > 0
        assert ctx.intensity.location.endswith(f"(aws:{name})")


def test_our_lookup_equals_codecarbons_own_api():
    # codecarbon's internal API, run in a child so that its import (NVML, pandas) stays out of
    # this process. Covers each conversion path: global mix, US lb/MWh, Canadian mix, Nordic, China.
    places = [
        ("FRA", None),
        ("USA", "virginia"),
        ("USA", "new york"),
        ("CAN", "quebec"),
        ("CAN", "alberta"),
        ("SWE", "SE3"),
        ("NOR", "NO4"),
        ("CHN", "beijing"),
    ]
    code = (
        "import json, sys\n"
        "from codecarbon.core.emissions import Emissions\n"
        "from codecarbon.core.units import Energy\n"
        "from codecarbon.external.geography import GeoMetadata\n"
        "from codecarbon.input import DataSource\n"
        "e = Emissions(DataSource())\n"
        "out = [1000 * e.get_private_infra_emissions(Energy.from_energy(kWh=1), GeoMetadata(c, region=r))\n"
        "       for c, r in json.loads(sys.argv[1])]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(places)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = [codecarbon_intensity(c, r).g_per_kwh for c, r in places]
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_sub_regions_are_case_insensitive_and_named_in_the_location():
    assert resolve_intensity(country="usa/Virginia").intensity.location == "USA/virginia"
    assert resolve_intensity(country="CAN/quebec").intensity.g_per_kwh < 10
    assert resolve_intensity(country="swe/se3").intensity.location == "SWE/SE3"


def test_unknown_region_is_an_input_error_that_names_it_and_lists_the_known_ones():
    with pytest.raises(InputError) as err:
        resolve_intensity(region="aws:mars-north-1")
    message = str(err.value)
    assert "aws:mars-north-1" in message
    assert "aws:us-east-1" in message and "aws:ap-south-1" in message
    assert "\n" not in message


def test_a_bare_region_name_is_rejected_with_a_hint():
    with pytest.raises(InputError, match=r"did you mean aws:us-east-1\?"):
        resolve_intensity(region="us-east-1")


def test_unknown_country_and_unknown_state_are_input_errors_not_world_averages():
    with pytest.raises(InputError, match="'XYZ'"):
        resolve_intensity(country="XYZ")
    with pytest.raises(InputError, match="'atlantis' of USA: known: alabama"):
        resolve_intensity(country="USA/atlantis")
    with pytest.raises(InputError, match="no sub-region data"):
        resolve_intensity(country="FRA/bretagne")


def test_no_location_means_no_carbon_figure():
    assert resolve_intensity() is None


def test_a_pue_alone_is_refused_rather_than_ignored():
    with pytest.raises(InputError, match="PUE needs"):
        resolve_intensity(pue=1.2)


def test_two_locations_at_once_are_refused():
    with pytest.raises(InputError, match="region and country"):
        resolve_intensity(region="aws:us-east-1", country="FRA")


def test_user_supplied_intensity_and_pue():
    ctx = resolve_intensity(intensity_g_per_kwh=100.0, pue=1.3)
    assert ctx.intensity.source == "user-supplied"
    assert ctx.intensity.basis == "location-based"
    assert ctx.pue == 1.3 and ctx.pue_source == "user"
    assert co2_g(3.6e6, ctx) == pytest.approx(130.0)  # 1 kWh x 1.3 x 100 g/kWh


def test_a_user_pue_overrides_the_aws_default():
    ctx = resolve_intensity(region="aws:eu-west-3", pue=1.04)
    assert (ctx.pue, ctx.pue_source) == (1.04, "user")


@pytest.mark.parametrize(
    "kwargs",
    [{"intensity_g_per_kwh": -1.0}, {"intensity_g_per_kwh": float("nan")}, {"country": "FRA", "pue": 0.9}],
)
def test_impossible_numbers_are_input_errors(kwargs):
    with pytest.raises(InputError):
        resolve_intensity(**kwargs)


def test_per_million_tokens():
    assert per_million_tokens(2.0, 500_000) == pytest.approx(4.0)
    assert per_million_tokens(2.0, 0) is None


def test_importing_the_module_or_looking_up_a_region_does_not_import_codecarbon():
    code = (
        "import sys\n"
        "import wattprof.analysis.carbon as c\n"
        "assert 'codecarbon' not in sys.modules, 'import'\n"
        "c.resolve_intensity(region='aws:us-east-1')\n"
        "c.resolve_intensity(country='CAN/quebec')\n"
        "assert not [m for m in sys.modules if m.startswith(('codecarbon', 'pynvml', 'pandas'))], 'lookup'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
