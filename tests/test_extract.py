"""The extraction task reads a page as trafilatura's full extraction would, whatever shortcuts it takes."""

from __future__ import annotations

from datetime import UTC, datetime

import trafilatura

from monitor.extract import FAST_ENOUGH_CHARS, article_from_html, clean_lines
from monitor.models import Article

SHORT_PAGE = b"""<!doctype html><html lang="en"><head><title>Harbour bridge closes for repairs | Coast Gazette</title>
<meta name="author" content="Ana Lima"><meta property="article:published_time" content="2026-03-04T08:00:00Z">
<link rel="canonical" href="http://127.0.0.2/news/bridge"></head><body><nav><a href="/">Home</a></nav>
<article><h1>Harbour bridge closes for repairs</h1>
<p>The harbour bridge will close for three weeks from Monday while engineers replace the worn expansion joints.</p>
<p>Buses will divert through the tunnel, adding about ten minutes to journeys into the centre, the council said.</p>
<p>Cyclists and pedestrians may still cross on the northern walkway, which stays open during the works.</p>
</article><footer>Copyright 2026 Coast Gazette</footer></body></html>"""


def test_a_page_the_fast_extraction_finds_short_reads_as_the_full_extraction() -> None:
    url = "http://127.0.0.2/news/bridge"
    fast = trafilatura.bare_extraction(SHORT_PAGE, url=url, with_metadata=True, include_comments=False, fast=True)
    assert fast is not None and len(fast.text) < FAST_ENOUGH_CHARS  # the page takes the second, full run
    full = trafilatura.bare_extraction(SHORT_PAGE, url=url, with_metadata=True, include_comments=False)

    article = article_from_html(SHORT_PAGE, url=url, fetched_at=datetime(2026, 3, 4, 9, tzinfo=UTC))

    assert isinstance(article, Article)
    assert article.text == "\n\n".join(clean_lines(full.text))
    assert (article.title, article.author, article.canonical_url) == (full.title, full.author, full.url)
    assert article.published == datetime.fromisoformat(full.date).replace(tzinfo=UTC)
    assert article.language == "en"
