"""`hub model report ID --out DIR`: Splink's charts for a stored model on the hub's records, offline HTML.

Writes match_weights.html, m_u_parameters.html, unlinkables.html, waterfall.html (the strongest predicted
pairs), comparison_viewer.html (sample pairs per comparison vector) and cluster_studio.html (clusters at
HUB_LINK_THRESHOLD, largest first), each self-contained (Splink inlines vega; no network needed). The
waterfall, comparison viewer and cluster studio show record values (names, birth dates): the folder holds
personal data and is the operator's to protect; the charts of weights hold none.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

from hub.config import Settings
from hub.db import Database
from hub.ops.models import get_model

CHARTS = ("match_weights", "m_u_parameters", "unlinkables", "waterfall", "comparison_viewer", "cluster_studio")


def _charts(table, model: dict[str, Any], out: str, link_threshold: float, waterfall_pairs: int) -> list[str]:
    import duckdb

    from matching.cluster import register_term_frequencies, splink_settings
    from matching.table import feature_table
    from matching.train import make_linker

    os.makedirs(out, exist_ok=True)
    settings = dict(splink_settings(model), retain_matching_columns=True, retain_intermediate_calculation_columns=True)
    con = duckdb.connect()
    try:
        linker, db_api = make_linker(con, feature_table(table, id_column="id"), settings)
        register_term_frequencies(linker, db_api, model)
        written = []

        def save(name: str, chart) -> None:
            path = os.path.join(out, f"{name}.html")
            chart.save_offline_chart(path, overwrite=True, print_msg=False)
            written.append(path)

        save("match_weights", linker.visualisations.match_weights_chart())
        save("m_u_parameters", linker.visualisations.m_u_parameters_chart())
        save("unlinkables", linker.evaluation.unlinkables_chart())
        pred = linker.inference.predict(threshold_match_probability=0.5)
        rows = con.sql(f"SELECT * FROM {pred.physical_name} ORDER BY match_weight DESC LIMIT {int(waterfall_pairs)}")
        records = [dict(zip(rows.columns, r, strict=True)) for r in rows.fetchall()]
        if records:
            save("waterfall", linker.visualisations.waterfall_chart(records))
        path = os.path.join(out, "comparison_viewer.html")
        linker.visualisations.comparison_viewer_dashboard(pred, path, overwrite=True, num_example_rows=2)
        written.append(path)
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            pred, threshold_match_probability=link_threshold)
        path = os.path.join(out, "cluster_studio.html")
        linker.visualisations.cluster_studio_dashboard(pred, clusters, path, sampling_method="by_cluster_size",
                                                       overwrite=True)
        written.append(path)
        return written
    finally:
        con.close()


async def write_report(*, db: Database, settings: Settings, model_id: int, out: str,
                       waterfall_pairs: int = 20) -> list[str]:
    """Write the charts of stored model `model_id` into folder `out`; return the files written."""
    from hub.ops.rematch import read_records

    row = await get_model(db=db, model_id=model_id)
    table, _ = await read_records(db=db)
    return await asyncio.to_thread(_charts, table, row["model"], out, settings.link_threshold, waterfall_pairs)


__all__ = ["CHARTS", "write_report"]
