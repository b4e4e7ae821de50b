"""The extraction task reads a page as trafilatura's full extraction would, whatever shortcuts it takes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trafilatura

from monitor.extract import FAST_ENOUGH_CHARS, _date_params, article_from_html, clean_lines
from monitor.models import Article

SHORT_PAGE = b"""<!doctype html><html lang="en"><head><title>Harbour bridge closes for repairs | Coast Gazette</title>
<meta name="author" content="Ana Lima"><meta property="article:published_time" content="2026-03-04T08:00:00Z">
<link rel="canonical" href="http://127.0.0.2/news/bridge"></head><body><nav><a href="/">Home</a></nav>
<article><h1>Harbour bridge closes for repairs</h1>
<p>The harbour bridge will close for three weeks from Monday while engineers replace the worn expansion joints.</p>
<p>Buses will divert through the tunnel, adding about ten minutes to journeys into the centre, the council said.</p>
<p>Cyclists and pedestrians may still cross on the northern walkway, which stays open during the works.</p>
</article><footer>Copyright 2026 Coast Gazette</footer></body></html>"""
# No meta tags: the title, author and date come from the page's own markup and text.
BYLINE_PAGE = b"""<!doctype html><html lang="en"><head><title>Ferry strike ends after talks - Coast Gazette</title>
</head>
<body><header><a href="/">Coast Gazette</a></header><main><h1>Ferry strike ends after talks</h1>
<p class="byline">By <span class="author">Jo Perez</span></p><p class="date">Published 5 March 2026</p>
<p>Ferry crews returned to work on Thursday after union leaders and the operator agreed a new rota overnight.</p>
<p>The first crossing left at six, and the timetable should be back to normal by the weekend, the operator said.</p>
<p>Passengers with cancelled tickets can claim a refund at the terminal or online until the end of the month.</p>
</main></body></html>"""


@pytest.mark.parametrize("page", [SHORT_PAGE, BYLINE_PAGE], ids=["meta-tags", "byline"])
def test_a_page_the_fast_extraction_finds_short_reads_as_the_full_extraction(page: bytes) -> None:
    url = "http://127.0.0.2/news/story"
    options = {"url": url, "with_metadata": True, "include_comments": False, "date_extraction_params": _date_params()}
    fast = trafilatura.bare_extraction(page, fast=True, **options)
    assert fast is not None and len(fast.text) < FAST_ENOUGH_CHARS  # the page takes the second, full run
    full = trafilatura.bare_extraction(page, **options)  # trafilatura's own reading, metadata and all

    article = article_from_html(page, url=url, fetched_at=datetime(2026, 3, 6, 9, tzinfo=UTC))

    assert isinstance(article, Article)
    assert article.text == "\n\n".join(clean_lines(full.text))
    assert (article.title, article.author) == (full.title, full.author)
    assert article.canonical_url == full.url
    assert article.published == datetime.fromisoformat(full.date).astimezone(UTC)
    assert article.language == "en"


def _brief_page(paragraph: str) -> bytes:
    return f"""<!doctype html><html lang="en"><head><title>Polls close in Turkmenistan | Harbour Herald</title>
<meta name="author" content="Priya Raman"></head><body><nav><a href="/">Home</a> <a href="/politics/">Politics</a></nav>
<main><article><h1>Polls close in Turkmenistan</h1>
<p class="byline">By <span class="author">Priya Raman</span> <time datetime="2026-10-29T20:34:00Z">Thu 29 Oct 2026
20.34 GMT</time></p><p>{paragraph}</p>
<div class="share-tools"><span class="share-label">Share this article</span><ul>
<li><a href="https://twitter.com/intent/tweet?url=x" rel="nofollow">Tweet</a></li>
<li><a href="https://wa.me/?text=x" rel="nofollow">WhatsApp</a></li>
<li><a href="https://www.facebook.com/sharer/sharer.php?u=x" rel="nofollow">Share on Facebook</a></li></ul></div>
</article></main><footer>Copyright 2026 Harbour Herald</footer></body></html>""".encode()


ONE_SENTENCE = "The parliament election is over in Turkmenistan, officials said on Sunday."
# Long enough that trafilatura's rescue, byline and buttons included, is over its own 250-character bar.
TWO_SENTENCES = (ONE_SENTENCE + " Turnout was put at ninety-one per cent by the electoral commission, which said"
                 " counting in the capital ended before midnight.")


@pytest.mark.parametrize("paragraph", [ONE_SENTENCE, TWO_SENTENCES], ids=["one-sentence", "rescue-over-250"])
def test_a_brief_keeps_its_text_without_byline_or_share_buttons(paragraph: str) -> None:
    """trafilatura rescues a text this short with the article element's whole text as one block,
    which line cleaning cannot split: two briefs of one outlet then shared only chrome words."""
    page = _brief_page(paragraph)
    rescued = trafilatura.bare_extraction(page, include_comments=False)
    assert rescued is not None and "Share on Facebook" in rescued.text  # what the rescue alone gives

    article = article_from_html(page, url="http://127.0.0.2/brief", fetched_at=datetime(2026, 10, 30, tzinfo=UTC))

    assert isinstance(article, Article)
    assert paragraph in article.text
    for chrome in ("Priya Raman", "Tweet", "WhatsApp", "Share", "GMT"):
        assert chrome not in article.text
    assert article.author == "Priya Raman"


def test_a_page_whose_entry_gives_a_date_is_read_without_its_own() -> None:
    """The entry's date wins over the page's, so the extraction processes skip htmldate's search for it."""
    url = "http://127.0.0.2/news/bridge"
    fetched = datetime(2026, 3, 6, 9, tzinfo=UTC)
    full = article_from_html(SHORT_PAGE, url=url, fetched_at=fetched)
    undated = article_from_html(SHORT_PAGE, url=url, fetched_at=fetched, date=False)
    assert isinstance(full, Article) and isinstance(undated, Article)
    assert full.published == datetime(2026, 3, 4, 8, tzinfo=UTC) and undated.published is None
    assert (undated.text, undated.title, undated.author) == (full.text, full.title, full.author)
