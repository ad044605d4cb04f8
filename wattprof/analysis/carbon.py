"""Carbon: turn measured energy into grams of CO2e, with the location and data source stated.

CO2e (g) = energy (kWh) x PUE x grid intensity (g CO2e/kWh).

The intensity is an annual grid average for a location: the GHG Protocol Scope 2 *location-based*
figure (never market-based: no contracts, certificates or PPAs are taken into account). The grid
data is CodeCarbon's packaged offline data; which file (and year) was used is carried in every
`Intensity` so that reports can print it. There is no default location: with no region, country
or intensity given, `resolve_intensity` returns None and the caller shows energy only.

Only `_codecarbon_json` and `codecarbon_intensity` know about CodeCarbon (file names, units,
formulas). Decision, measured with codecarbon 3.3.2 on a host without GPU: `import
codecarbon.core.emissions` runs `codecarbon/__init__.py` (EmissionsTracker, psutil, pynvml with
`nvmlInit()` at import, and `nvidia-smi --help` in a subprocess when that fails), about 90 ms,
and the first `Emissions(DataSource()).get_private_infra_emissions(...)` loads pandas and two CSV
files: 180-330 ms in all. It also falls back silently: an unknown US state gives the national
figure and an unknown country the world average (475 g/kWh), which we must never do. Reading
the same JSON files directly (package located with `importlib.util.find_spec`, which does not
import it; version from `importlib.metadata`) takes about 20 ms, imports nothing of codecarbon
and lets unknown names fail loudly. We therefore read the files and re-apply CodeCarbon's unit
conversions; tests/test_carbon.py checks that the results equal CodeCarbon's own API.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattprof.errors import InputError

__all__ = [
    "AWS_REGIONS",
    "Carbon",
    "CarbonContext",
    "Intensity",
    "carbon_for",
    "co2_g",
    "codecarbon_intensity",
    "per_million_tokens",
    "resolve_intensity",
]

J_PER_KWH = 3.6e6
# EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle", EPA-420-F-23-014 (2023):
# about 400 g CO2 per mile.
CAR_G_PER_MILE = 400.0
KM_PER_MILE = 1.609344

# AWS-reported global PUE for 2023 and for 2024 (best site 1.04):
# https://sustainability.aboutamazon.com/products-services/aws-cloud
AWS_PUE = 1.15
AWS_PUE_SOURCE = "AWS-reported 2023/2024 PUE 1.15"
DEFAULT_PUE_SOURCE = "1.0 (not data-centre adjusted; pass --pue)"
USER_SOURCE = "user"

# AWS region -> CodeCarbon location (country ISO3, sub-region or None). Region locations from
# AWS's "Regions and Availability Zones" page
# (https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html); the
# sub-region is the state/province/bidding zone that holds the region's data centres, where
# CodeCarbon has data for it (US states, Canadian provinces, Nordic bidding zones).
AWS_REGIONS: dict[str, tuple[str, str | None]] = {
    "us-east-1": ("USA", "virginia"),  # US East (N. Virginia)
    "us-east-2": ("USA", "ohio"),  # US East (Ohio)
    "us-west-1": ("USA", "california"),  # US West (N. California)
    "us-west-2": ("USA", "oregon"),  # US West (Oregon)
    "ca-central-1": ("CAN", "quebec"),  # Canada (Central), Montreal
    "ca-west-1": ("CAN", "alberta"),  # Canada West (Calgary)
    "eu-west-1": ("IRL", None),  # Europe (Ireland)
    "eu-west-2": ("GBR", None),  # Europe (London)
    "eu-west-3": ("FRA", None),  # Europe (Paris)
    "eu-central-1": ("DEU", None),  # Europe (Frankfurt)
    "eu-central-2": ("CHE", None),  # Europe (Zurich)
    "eu-south-1": ("ITA", None),  # Europe (Milan)
    "eu-south-2": ("ESP", None),  # Europe (Spain)
    "eu-north-1": ("SWE", "SE3"),  # Europe (Stockholm): Stockholm lies in bidding zone SE3
    "ap-south-1": ("IND", None),  # Asia Pacific (Mumbai)
    "ap-northeast-1": ("JPN", None),  # Asia Pacific (Tokyo)
    "ap-northeast-2": ("KOR", None),  # Asia Pacific (Seoul)
    "ap-northeast-3": ("JPN", None),  # Asia Pacific (Osaka)
    "ap-southeast-1": ("SGP", None),  # Asia Pacific (Singapore)
    "ap-southeast-2": ("AUS", None),  # Asia Pacific (Sydney)
    "ap-east-1": ("HKG", None),  # Asia Pacific (Hong Kong)
    "sa-east-1": ("BRA", None),  # South America (Sao Paulo)
    "af-south-1": ("ZAF", None),  # Africa (Cape Town)
    "me-central-1": ("ARE", None),  # Middle East (UAE)
}


@dataclass(frozen=True)
class Intensity:
    """A grid carbon intensity and where it came from."""

    g_per_kwh: float
    location: str  # human readable, e.g. "USA/virginia (aws:us-east-1)"
    source: str  # e.g. "codecarbon 3.3.2 offline data: data/private_infra/2023/usa_emissions.json"
    year: str | None
    basis: str = "location-based"  # GHG Protocol Scope 2


@dataclass(frozen=True)
class CarbonContext:
    """Everything needed to turn energy into CO2e: the grid intensity and the PUE applied."""

    intensity: Intensity
    pue: float
    pue_source: str


@dataclass(frozen=True)
class Carbon:
    """The carbon figure of one energy amount, with its inputs and an everyday equivalent."""

    energy_kwh: float  # measured (IT) energy
    pue: float
    facility_kwh: float  # energy_kwh x pue
    g_co2e: float
    intensity: Intensity
    car_km: float  # passenger-car distance with the same CO2 (EPA-420-F-23-014)
    car_miles: float


# --- CodeCarbon adapter: the only code that knows CodeCarbon's files, units and formulas ---------

_LBS_PER_MWH_TO_G_PER_KWH = 0.45359237  # 1 lb/MWh = 453.59237 g / 1000 kWh
# CodeCarbon's factors for its Canadian energy-mix data (kg/kWh, core/emissions.py,
# `_region_energy_mix_to_emissions_rate`); only these three fossil sources are counted.
_CAN_G_PER_KWH = {"coal": 995.725971, "petroleum": 816.6885263, "naturalGas": 743.8415916}
_NORDIC_ZONES = {
    "SWE": ("SE1", "SE2", "SE3", "SE4"),
    "NOR": ("NO1", "NO2", "NO3", "NO4", "NO5"),
    "FIN": ("FI",),
}
_CHN_SUFFIX = re.compile(r"\s+(autonomous region|municipality|province|sheng|shi|zizhiqu)$")

_GLOBAL = "data/private_infra/global_energy_mix.json"
_USA = "data/private_infra/2023/usa_emissions.json"
_CAN = "data/private_infra/2023/canada_energy_mix.json"
_NORDIC = "data/private_infra/nordic_emissions.json"
_CHN = "data/private_infra/2023/china_provincial_emissions.json"


@functools.lru_cache(maxsize=1)
def _codecarbon_version_and_dir() -> tuple[str, Path]:
    from importlib.metadata import version  # ~20 ms (email parsing): only when a location is asked for

    spec = importlib.util.find_spec("codecarbon")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "a carbon figure for a region or country needs codecarbon's data: "
            "pip install codecarbon, or pass a constant intensity (g CO2e/kWh)"
        )
    return version("codecarbon"), Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=8)
def _codecarbon_json(relpath: str) -> Any:
    return json.loads((_codecarbon_version_and_dir()[1] / relpath).read_text(encoding="utf-8"))


def _sub_regions(country: str) -> list[str]:
    """The sub-regions CodeCarbon has data for in `country` (ISO3, upper case)."""
    if country == "USA":
        return [k for k in _codecarbon_json(_USA) if not k.startswith("_")]
    if country == "CAN":
        return list(_codecarbon_json(_CAN))
    if country in _NORDIC_ZONES:
        return [z for z in _NORDIC_ZONES[country] if z in _codecarbon_json(_NORDIC)["data"]]
    if country == "CHN":
        return [p["names"][0] for p in _codecarbon_json(_CHN)["data"].values()]
    return []


def codecarbon_intensity(country: str, region: str | None = None) -> Intensity:
    """g CO2e/kWh for a country (ISO3) and optional sub-region, from CodeCarbon's offline data.

    Gives the same figure as CodeCarbon's `Emissions.get_private_infra_emissions`, but raises
    InputError for a location CodeCarbon has no data for instead of falling back silently.
    """
    version, _ = _codecarbon_version_and_dir()
    country = country.strip().upper()
    mix = _codecarbon_json(_GLOBAL)
    if country not in mix:
        raise InputError(
            f"unknown country {country!r}: expected an ISO 3166 alpha-3 code from codecarbon's data "
            f"({len(mix)} known, e.g. FRA, DEU, USA, IND), optionally with a sub-region as USA/virginia"
        )
    if region is None:
        entry = mix[country]
        return Intensity(
            g_per_kwh=float(entry["carbon_intensity"]),
            location=country,
            source=f"codecarbon {version} offline data: {_GLOBAL}",
            year=str(entry["year"]) if entry.get("year") is not None else None,
        )

    key = " ".join(region.split()).lower()
    known = _sub_regions(country)
    location = f"{country}/{region.strip()}"
    g_per_kwh: float | None = None
    year: str | None = None
    relpath = ""
    note = ""
    if country == "USA" and key in known:
        relpath, data = _USA, _codecarbon_json(_USA)
        g_per_kwh = data[key]["emissions"] * _LBS_PER_MWH_TO_G_PER_KWH
        year = str(data["_source"]["year"])
        location = f"USA/{key}"
    elif country == "CAN" and key in known:
        relpath, data = _CAN, _codecarbon_json(_CAN)[key]
        g_per_kwh = sum(data[src] / data["total"] * g for src, g in _CAN_G_PER_KWH.items())
        year, note = "2023", " (fossil generation only)"
        location = f"CAN/{key}"
    elif country in _NORDIC_ZONES and key.upper() in known:
        relpath, data = _NORDIC, _codecarbon_json(_NORDIC)["data"][key.upper()]
        g_per_kwh, year = float(data["emission_factor"]), str(data["year"])
        location = f"{country}/{key.upper()}"
    elif country == "CHN":
        name = _CHN_SUFFIX.sub("", key)
        for province in _codecarbon_json(_CHN)["data"].values():
            if name in province["names"]:
                relpath = _CHN
                g_per_kwh, year, note = (
                    float(province["emission_factor"]),
                    str(province["year"]),
                    " (CO2 only)",
                )
                location = f"CHN/{province['names'][0]}"
                break
    if g_per_kwh is None:
        have = f"known: {', '.join(known)}" if known else "codecarbon has no sub-region data for it"
        raise InputError(f"unknown sub-region {region!r} of {country}: {have}")
    return Intensity(
        g_per_kwh=g_per_kwh,
        location=location,
        source=f"codecarbon {version} offline data: {relpath}{note}",
        year=year,
    )


# --- resolving the user's options -----------------------------------------------------------------


def _check_positive(name: str, value: float, *, minimum: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < minimum:
        raise InputError(f"{name} must be a number >= {minimum:g}, got {value!r}")
    return value


def resolve_intensity(
    *,
    region: str | None = None,
    country: str | None = None,
    intensity_g_per_kwh: float | None = None,
    pue: float | None = None,
) -> CarbonContext | None:
    """The carbon context for the user's options, or None when no location or intensity is given.

    region: a cloud region, "aws:us-east-1". country: ISO3, optionally with a sub-region,
    "FRA", "usa/virginia", "CAN/quebec", "SWE/SE3". intensity_g_per_kwh: a constant the user
    supplies. At most one of the three. pue defaults to AWS's reported 1.15 for AWS regions and to
    1.0 otherwise. Raises InputError for an unknown name, a conflict, or a PUE without a location.
    """
    given = [
        name
        for name, value in (("region", region), ("country", country), ("intensity", intensity_g_per_kwh))
        if value is not None
    ]
    if len(given) > 1:
        raise InputError(f"give only one of region, country or intensity, got {' and '.join(given)}")
    if not given:
        if pue is not None:
            raise InputError("a PUE needs a region, a country or an intensity to give a carbon figure")
        return None

    pue_value = _check_positive("PUE", pue, minimum=1.0) if pue is not None else None
    default_pue, default_source = 1.0, DEFAULT_PUE_SOURCE
    if intensity_g_per_kwh is not None:
        g = _check_positive("intensity (g CO2e/kWh)", intensity_g_per_kwh, minimum=0.0)
        intensity = Intensity(
            g_per_kwh=g, location="not given (user-supplied intensity)", source="user-supplied", year=None
        )
    elif region is not None:
        provider, sep, name = region.strip().lower().partition(":")
        if not sep:
            provider, name = "", provider
        known = ", ".join(f"aws:{r}" for r in AWS_REGIONS)
        if provider != "aws" or name not in AWS_REGIONS:
            hint = f" (did you mean aws:{name}?)" if not provider and name in AWS_REGIONS else ""
            raise InputError(f"unknown region {region!r}{hint}; known regions: {known}")
        found = codecarbon_intensity(*AWS_REGIONS[name])
        intensity = Intensity(
            g_per_kwh=found.g_per_kwh,
            location=f"{found.location} (aws:{name})",
            source=found.source,
            year=found.year,
        )
        default_pue, default_source = AWS_PUE, AWS_PUE_SOURCE
    else:
        assert country is not None
        code, sep, sub = country.partition("/")
        if sep and not sub.strip():
            raise InputError(f"empty sub-region in country {country!r}: expected e.g. USA/virginia")
        intensity = codecarbon_intensity(code, sub if sep else None)

    if pue_value is not None:
        return CarbonContext(intensity=intensity, pue=pue_value, pue_source=USER_SOURCE)
    return CarbonContext(intensity=intensity, pue=default_pue, pue_source=default_source)


# --- arithmetic -----------------------------------------------------------------------------------


def co2_g(energy_j: float, ctx: CarbonContext) -> float:
    """Grams of CO2e for `energy_j` joules of measured energy: kWh x PUE x g/kWh."""
    if not math.isfinite(energy_j) or energy_j < 0:
        raise InputError(f"energy must be a finite number of joules >= 0, got {energy_j!r}")
    return energy_j / J_PER_KWH * ctx.pue * ctx.intensity.g_per_kwh


def carbon_for(energy_j: float, ctx: CarbonContext) -> Carbon:
    """The carbon figure for `energy_j` joules, with the car distance that emits as much CO2."""
    g = co2_g(energy_j, ctx)
    energy_kwh = energy_j / J_PER_KWH
    miles = g / CAR_G_PER_MILE
    return Carbon(
        energy_kwh=energy_kwh,
        pue=ctx.pue,
        facility_kwh=energy_kwh * ctx.pue,
        g_co2e=g,
        intensity=ctx.intensity,
        car_km=miles * KM_PER_MILE,
        car_miles=miles,
    )


def per_million_tokens(g: float, tokens: int) -> float | None:
    """Grams per million tokens; None when there are no tokens to divide by."""
    if tokens <= 0:
        return None
    return g * 1e6 / tokens
