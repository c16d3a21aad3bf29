"""Method cards: the selected method's card beside the form, and a table of all of them."""

from __future__ import annotations

import pandas as pd

from engine.contract import MethodInfo


def paper_link(paper: str) -> str:
    if paper.lower().startswith("arxiv:"):
        number = paper.split(":", 1)[1]
        return f"[{paper}](https://arxiv.org/abs/{number})"
    return paper


def card_markdown(method: MethodInfo) -> str:
    card = method.get("card")
    if not card:
        return f"**{method['name']}**: {method['description']}"
    return (
        f"**{card['title']}** · {card['authors']} · {card['year']} · "
        f"{paper_link(card['paper'])}\n\n"
        f"{card['idea']}\n\n"
        f"**Good at:** {card['good_at']}\n\n"
        f"**Key settings:** {card['hyperparameters']}"
    )


def cards_table(methods: list[MethodInfo]) -> pd.DataFrame:
    rows = []
    for m in methods:
        card = m.get("card") or {}
        rows.append(
            {
                "method": m["name"],
                "year": card.get("year", ""),
                "data": m.get("modality", ""),
                "core idea": card.get("idea", m["description"]),
                "strength": card.get("good_at", ""),
            }
        )
    frame = pd.DataFrame(rows, columns=["method", "year", "data", "core idea", "strength"])
    return frame.sort_values(["year", "method"], key=lambda c: c.astype(str)).reset_index(drop=True)
