"""Code Mode's tool search: which upstream tool does a sentence of natural language mean?

Ranking, all local and in memory (measured in bench/portal.py, tasks in tests/portal_search/):
- words: snake_case, camelCase and kebab-case split, lower-cased, stop words dropped, Snowball
  (Porter 2, PyStemmer) stems, so "directories" meets `create_directory`;
- BM25F over fields with their own weights: the tool's name and its server's name and
  description count most, then the tool's description, then its parameters;
- a vocabulary bridge: each query word widened with related words from a packaged lexicon
  (`lexicon/*.tsv`: WordNet 3.0 synonyms and derived forms plus a software glossary), ranked
  again and fused with the literal ranking by reciprocal rank fusion, so "folder" finds
  `create_directory` without outranking a tool that says "folder" itself;
- the action word: a tool whose name starts with the request's first word (or a relative) moves up;
- sentence embeddings (`semantic.py`, a small model shipped inside a PyPI package, run locally):
  the query's cosine to each tool is a third ranking in the same fusion; it bridges what no
  lexicon line does ("connect two people" / `create_relations`). A fourth: late interaction
  (MaxSim over the same run's token vectors) among the cosine's top tools, which tells near
  siblings apart a little better. Without the model: the above;
- before the word rankings, the request's literals are reduced to what they are: a file name
  or path ("server.log", "docs/index.md") counts as "file" / "path", a URL as "url", and quoted
  text (a commit message, a value) not at all, so "the last lines of server.log" is not `git_log`.
  The model reads the request as written.

`ToolSearch` keeps an index per distinct listing, so a search costs a lookup, not a rebuild.
"""

from __future__ import annotations

import math
import re
import threading
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import Stemmer

from aiplane.portal.toolsearch import semantic as _semantic
from aiplane.portal.toolsearch import slots as _slots

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])|([A-Z])([A-Z][a-z])")
STOP_WORDS = frozenset(
    "a an the in on at of to for from by with into onto and or but not no is are was were be been being am do does did "
    "i me my mine we us our you your it its this that these those there here what which who whom whose when where how "
    "why can could should would will shall may might must please want need let lets just also so than then too very "
    "all any some each every up out over about as if me s t m re ve ll d".split())
MAX_QUERY_TERMS = 64
MAX_WORD_CHARS = 40
MAX_QUERY_CHARS = 1000
MAX_FIELD_CHARS = 4000

# Field weights (BM25F), chosen on the dev half of tests/portal_search/tasks.json (bench/RESULTS.md):
# a word in the name says more than one in a description. Descriptions are normalised fully for
# length (b = 1): a long description's every word should not count like a short one's.
FIELD_WEIGHTS = {"name": 2.0, "description": 1.0, "params": 0.5, "server": 2.0}
FIELD_B = {"name": 0.75, "description": 1.0, "params": 0.75, "server": 0.5}
K1 = 1.2
# Reciprocal rank fusion of the literal and the lexicon-widened rankings; a small k lets the
# top of each ranking count (k = 60, the usual default, measured worse here).
# The server's name and description weigh as much as the tool's name: "on GitHub", "in memory"
# and "in the repo" say which server is meant (measured; params and server at 0.5 lost hits).
RRF_K = 5
BRIDGE_WEIGHT = 1.0
BRIDGE_RANK_WEIGHT = 1.6
# Worth about one rank near the top of the fused list (0.05 to 0.2 measured alike on dev).
ACTION_BONUS = 0.1
# The sentence-embedding ranking (semantic.py), a third list in the same fusion, when the model
# loads: 1.0 to 2.0 measured alike on dev (bench/RESULTS.md); only its top DENSE_DEPTH count.
DENSE_RANK_WEIGHT = 1.5
DENSE_DEPTH = 50
# Late interaction (semantic.py) over the cosine's top DENSE_DEPTH tools, a fourth list:
# 0.5 and 0.75 measured alike on dev + dev2, 1.0 lost hit@1 (bench/RESULTS.md).
LATE_RANK_WEIGHT = 0.5
# How long the first search of a new listing waits for its tools' embeddings (about 14 ms of
# CPU a tool) before it ranks lexically; 50 tools need about 0.7 s of CPU.
SEMANTIC_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ToolDoc:
    """One tool as search sees it; `key` is what a hit returns (e.g. `server__tool`)."""

    key: str
    name: str
    description: str = ""
    params: str = ""
    server: str = ""
    # What the sentence-embedding model reads: server and its description, the name's words,
    # the description and the parameter names (measured against shorter texts on dev).
    sentence: str = ""
    # What calling it does, from the server's MCP annotations: "read" (readOnlyHint), "remove"
    # (destructiveHint), "change" (not destructive), "write" (changes, destructive or not unsaid);
    # "" when the server does not say. Untrusted like the rest: it only moves a tool a rank.
    effect: str = ""
    # The kinds of argument its parameters take (slots.py): "url", "path", "revision"...
    accepts: frozenset[str] = frozenset()
    # The telling kinds its required parameters take (slots.requires): a clock time, a URL...
    requires: frozenset[str] = frozenset()


# PyStemmer: the Snowball algorithms in C (the pure-Python snowballstemmer took 3 s to load the lexicon).
_stemmer = Stemmer.Stemmer("english")


@lru_cache(maxsize=131072)
def stem(word: str) -> str:
    return _stemmer.stemWord(word)


_TOKEN = re.compile(r"[A-Za-z0-9]+")
_PLURAL_ACRONYM = re.compile(r"^[A-Z]{2,}s$")


def words(text: str, known: Container[str] | None = None) -> list[str]:
    """Lower-case words with names split: `list_directory`, `listDirectory`, `list-directory` alike.

    A mixed-case word counts as itself and as its parts ("GitHub": github, git, hub) in tools;
    in a query (`known` = the index's words), as itself when the tools use it, else as its parts.
    """
    found = []
    for token in _TOKEN.findall(text[:MAX_FIELD_CHARS]):
        if len(token) > MAX_WORD_CHARS:  # a blob (base64, a hash), not a word anyone searches by
            continue
        if token[1:].islower() or token.isdigit():  # most words: "file", "Create", "42"
            found.append(token.lower())
            continue
        whole = token.lower()
        if _PLURAL_ACRONYM.match(token):  # PRs, URLs, IDs: the acronym, not "p" + "rs"
            found.append(whole[:-1])
            continue
        parts = _CAMEL.sub(lambda m: f"{m.group(1) or m.group(3)} {m.group(2) or m.group(4)}", token).lower().split()
        if len(parts) == 1:
            found.append(whole)
        elif known is None:
            found += [whole, *parts]
        else:
            found += [whole] if stem(whole) in known else parts
    return [w for w in found if w not in STOP_WORDS]


def terms(text: str, known: Container[str] | None = None) -> list[str]:
    return [stem(w) for w in words(text, known)]


def _phrase(text: str) -> str:
    if text.isalpha() and text.islower():  # most entries: one plain word, no tokenising needed
        return "" if text in STOP_WORDS else stem(text)
    return " ".join(terms(text))


_NEGATION = re.compile(r"(?:\b(?:not|never)|n't|n’t)\s+(?:(?:yet|been|be|already|got|being)\s+){0,2}([A-Za-z]{3,30})\b", re.IGNORECASE)
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs)\.", re.IGNORECASE)


def literals(query: str) -> str:
    """The request with its literals reduced to their kind: URLs -> "url", file names -> "file",
    folder paths -> "path", quoted text dropped (what to name or write says nothing of which tool)."""
    query = _ABBREVIATION.sub(" ", _slots.fold(query[:MAX_QUERY_CHARS]))
    query = _slots.URL.sub(" url ", query)
    query = _slots.HOST.sub(" url ", query) if LITERAL_HOSTS else query
    query = _slots.QUOTED.sub(" ", query)
    query = _slots.FILE.sub(" file ", query)
    query = _slots.DOTFILE.sub(" file ", query) if LITERAL_DOTFILES else query
    return _slots.FOLDER.sub(" path ", query)


class Lexicon:
    """Stem -> related stems. Heads are stemmed when loaded; what they bring is stemmed the first
    time a query asks (loading stemmed every word up front took 0.6 s)."""

    def __init__(self) -> None:
        self._raw: dict[str, list[str]] = defaultdict(list)
        self._stemmed: dict[str, frozenset[str]] = {}

    def add(self, head: str, others: Iterable[str]) -> None:
        self._raw[head].extend(others)

    def knows(self, term: str) -> bool:
        return term in self._raw

    def related(self, term: str) -> frozenset[str]:
        found = self._stemmed.get(term)
        if found is None:
            if term not in self._raw:
                return frozenset()
            found = self._stemmed[term] = frozenset(w for other in self._raw[term] for w in _phrase(other).split()) - {term}
        return found


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The packaged lexicon files, read once, never fetched."""
    found = Lexicon()
    folder = resources.files("aiplane.portal.toolsearch").joinpath("lexicon")
    for name, one_way in (("wordnet.tsv", True), ("software.tsv", False)):
        for line in folder.joinpath(name).read_text(encoding="utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            group = [phrase for phrase in line.split("\t") if phrase.strip()]
            if not group:
                continue
            if group[0].endswith(">"):  # "open>\tcreate": open brings create, not the reverse
                group[0] = group[0][:-1]
            heads = group[:1] if one_way or line.split("\t", 1)[0].endswith(">") else group
            # A one-word head brings every word of the others; a phrase ("make directory") is
            # no head: its words alone ("make") do not mean the group.
            for head in heads:
                stemmed = _phrase(head)
                if stemmed and " " not in stemmed:
                    found.add(stemmed, (other for other in group if other != head))
    return found


SPELLING = True
LITERAL_HOSTS = True
LITERAL_DOTFILES = True
MIN_SPELLED = 4
# The spelling index holds each term under its one-letter deletions: only terms of MIN_SPELLED to
# MAX_SPELLED letters, and at most MAX_SPELLING_TERMS of them (those in the most tools first), so
# a hostile upstream's vocabulary costs at most about 100,000 entries (the seven servers: 900 terms).
MAX_SPELLED = 20
MAX_SPELLING_TERMS = 5_000


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def _one_edit(a: str, b: str) -> bool:
    """One insertion, deletion, substitution or swap of neighbours apart (not equal)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


class ToolIndex:
    """BM25F over the tools' fields, fused with a lexicon-widened ranking."""

    def __init__(self, docs: Sequence[ToolDoc], *, bridge: bool = True,
                 weights: Mapping[str, float] = FIELD_WEIGHTS) -> None:
        self.keys = [d.key for d in docs]
        self.vectors: Future | None = None  # the tools' sentence embeddings, set by ToolSearch
        self.waited = False  # only the first search of a listing waits for them
        self.bridge = bridge
        self.effects = [d.effect for d in docs]
        # Which tools take each kind of argument, and how telling it is (idf: a kind most tools
        # take, like a number, says little).
        self.takers: dict[str, set[int]] = defaultdict(set)
        for doc, d in enumerate(docs):
            for kind in d.accepts:
                self.takers[kind].add(doc)
        self.accepted = [d.accepts for d in docs]
        self.required = [d.requires for d in docs]
        self.kind_weight = {kind: math.log((len(docs) + 1) / (len(takers) + 1)) for kind, takers in self.takers.items()}
        # A tool's action: the first word of its name that is not its server's ("git_add": add).
        self.actions: dict[str, list[int]] = defaultdict(list)
        for doc, d in enumerate(docs):
            server = set(terms(d.server.split(" ", 1)[0]))
            action = next((t for t in terms(d.name) if t not in server), None)
            if action:
                self.actions[action].append(doc)
        fields = {f: [terms(getattr(d, f)) for d in docs] for f in weights}
        average = {f: (sum(map(len, rows)) / len(rows) if rows else 0.0) or 1.0 for f, rows in fields.items()}
        # term -> {doc: field-weighted, length-normalised frequency}
        weighted: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for f, rows in fields.items():
            b = FIELD_B[f]
            for doc, row in enumerate(rows):
                if not row:
                    continue
                norm = weights[f] / (1 - b + b * len(row) / average[f])
                for t in row:
                    weighted[t][doc] += norm
        n = len(docs)
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for t, per_doc in weighted.items():
            idf = math.log(1 + (n - len(per_doc) + 0.5) / (len(per_doc) + 0.5))
            self.postings[t] = [(doc, idf * tf * (K1 + 1) / (tf + K1)) for doc, tf in per_doc.items()]
        # Each term under itself and its one-letter deletions, so a request's misspelt word ("comit",
        # "dirctory") finds the tools' term one edit away (symmetric delete: a few lookups a word).
        self.near: dict[str, set[str]] = defaultdict(set)
        if SPELLING:
            # Tool and server names' terms first (what a misspelt request word most often means,
            # and bounded by the names' length), then the others in the most tools, up to the cap.
            named = {t for f in ("name", "server") if f in fields for row in fields[f] for t in row}
            spelled = [t for t in self.postings if MIN_SPELLED <= len(t) <= MAX_SPELLED]
            if len(spelled) > MAX_SPELLING_TERMS:
                spelled = sorted(spelled, key=lambda t: (t not in named, -len(self.postings[t]), t))[:MAX_SPELLING_TERMS]
            for t in spelled:
                for key in _deletions(t):
                    self.near[key].add(t)

    def _spelled(self, term: str) -> str:
        """The term, or the one tool term it is a one-edit misspelling of (a word no tool and no
        lexicon line knows, of at least MIN_SPELLED letters; an ambiguous correction is not made)."""
        if not self.near or term in self.postings or not MIN_SPELLED <= len(term) <= MAX_SPELLED or lexicon().knows(term):
            return term
        found = {t for key in (term, *_deletions(term)) for t in self.near.get(key, ()) if _one_edit(term, t)}
        return found.pop() if len(found) == 1 else term

    def _asked(self, query: str) -> list[str]:
        """The request's terms: literals reduced to their kind, negations read, spelling mended."""
        text = literals(query)
        if NEGATIONS:
            text = _NEGATION.sub(self._negated, text)
        return [self._spelled(t) for t in dict.fromkeys(terms(text, self.postings))][:MAX_QUERY_TERMS]

    def _negated(self, match: re.Match[str]) -> str:
        """"not staged", "haven't tracked": "unstaged", "untracked", when the tools say that word."""
        word = match.group(1)
        opposite = "un" + word.lower()
        return f" {opposite} " if stem(opposite) in self.postings else match.group(0)

    def _scores(self, query: Sequence[Mapping[str, float]]) -> list[tuple[int, float]]:
        """Each query word is a group of alternatives (itself, weight 1, and related words):
        a tool scores the best alternative of each group, so a word with many relatives counts once."""
        scores: dict[int, float] = defaultdict(float)
        for group in query:
            best: dict[int, float] = {}
            for t, weight in group.items():
                for doc, s in self.postings.get(t, ()):
                    if weight * s > best.get(doc, 0.0):
                        best[doc] = weight * s
            for doc, s in best.items():
                scores[doc] += s
        return sorted(scores.items(), key=lambda item: (-item[1], self.keys[item[0]]))

    def search(self, query: str, limit: int = 8, similarity: Sequence[float] | None = None,
               late: Mapping[int, float] | None = None) -> list[str]:
        """`similarity`: the query's cosine to each tool (same order as the docs), and `late`: the
        late-interaction score of some of them (by position), when a model is loaded."""
        if not self.bridge:  # the bench's plain-BM25 steps: the literal ranking alone
            return [self.keys[doc] for doc, _ in self._scores([{t: 1.0} for t in self._asked(query)])[:limit]]
        candidates, rows = self.features(query, similarity, late)
        weights = ranking_weights()
        scored = [(doc, sum(w * f for w, f in zip(weights, row, strict=True))) for doc, row in zip(candidates, rows, strict=True)]
        best = sorted(scored, key=lambda item: (-item[1], self.keys[item[0]]))
        return [self.keys[doc] for doc, _ in best[:limit]]

    def features(self, query: str, similarity: Sequence[float] | None = None,
                 late: Mapping[int, float] | None = None) -> tuple[list[int], list[list[float]]]:
        """The candidate tools (any ranking's) and, for each, the evidence named in FEATURES."""
        asked = self._asked(query)
        if not asked:  # only stop words: nothing to rank by, embedded or not
            return [], []
        literal = self._scores([{t: 1.0} for t in asked])
        related = lexicon()
        widened = [{t: 1.0, **dict.fromkeys(related.related(t), BRIDGE_WEIGHT)} for t in asked]
        rankings = [literal, self._scores(widened)]
        if similarity is not None:
            dense = sorted(range(len(similarity)), key=lambda doc: -similarity[doc])[:DENSE_DEPTH]
            rankings.append([(doc, similarity[doc]) for doc in dense])
        else:
            rankings.append([])
        rankings.append(sorted(late.items(), key=lambda item: (-item[1], item[0])) if late else [])
        candidates = list(dict.fromkeys(doc for ranking in rankings for doc, _ in ranking))
        position = {doc: i for i, doc in enumerate(candidates)}
        rows = [[0.0] * len(FEATURES) for _ in candidates]
        for number, ranking in enumerate(rankings):
            top = ranking[0][1] if ranking else 0.0
            rank_column, score_column = _AT[_RANK_FEATURES[number]], _AT[_SCORE_FEATURES[number]]
            for rank, (doc, score) in enumerate(ranking):
                row = rows[position[doc]]
                row[rank_column] = 1.0 / (RRF_K + rank + 1)
                if number < 2 and top > 0:  # the share of the best lexical score
                    row[score_column] = score / top
                elif number >= 2:  # how far below the best cosine / late score
                    row[score_column] = score - top
        # Requests start with what to do ("stage files...", "make a folder"): a tool whose
        # action is the query's first word, or a word related to it.
        for column, actions in ((_AT["action"], {asked[0]}), (_AT["action_related"], related.related(asked[0]) - {asked[0]})):
            for action in actions:
                for doc in self.actions.get(action, ()):
                    if doc in position:
                        rows[position[doc]][column] = 1.0
        # The request's first word against the tool's MCP annotations (read / change / remove).
        wanted = intent(query)
        contradicting = _CONTRADICTS.get(wanted, ())
        for doc, i in position.items():
            if self.effects[doc] in contradicting:
                rows[i][_AT["contradicts"]] = 1.0
            elif wanted and self.effects[doc]:
                rows[i][_AT["agrees"]] = 1.0
        # What the request supplies (a URL, two paths, a time and a zone...) against what each
        # tool takes, weighed by how few tools take each kind: the share of the request's
        # arguments the tool takes (recall), and of the tool's telling kinds the request gives (fit).
        given = _slots.kinds(query, lambda word: related.knows(stem(word)) or stem(word) in self.postings
                             or word in STOP_WORDS)
        supplied = {kind: self.kind_weight[kind] for kind in given if self.kind_weight.get(kind, 0) > 0}
        total = sum(supplied.values())
        if given & _slots.TELLING_KINDS:
            for doc, i in position.items():
                if self.required[doc] - given:
                    rows[i][_AT["slot_missing"]] = 1.0
        if total:
            for doc, i in position.items():
                taken = sum(weight for kind, weight in supplied.items() if doc in self.takers[kind])
                if taken:
                    # A tool that claims to take nearly every kind says little by it (a real one
                    # takes a few): its share shrinks past SPECIFIC_KINDS kinds.
                    claimed = len(self.accepted[doc] - _WEAK_KINDS)
                    rows[i][_AT["slot_recall"]] = taken / total * min(1.0, SPECIFIC_KINDS / claimed) if claimed else taken / total
                    offered = sum(self.kind_weight.get(kind, 0) for kind in self.accepted[doc] if kind not in _WEAK_KINDS)
                    rows[i][_AT["slot_fit"]] = min(1.0, taken / offered) if offered else 0.0
        return candidates, rows


# The evidence each candidate is scored on (ToolIndex.features), in order: reciprocal rank in the
# literal, lexicon-widened, cosine and late-interaction rankings; the share of the best literal and
# widened scores; the gap to the best cosine and late scores; the action word (same, related);
# the request's intent against the annotations (contradicts, agrees); argument kinds (recall, fit).
FEATURES = ("rrf_literal", "rrf_bridge", "rrf_dense", "rrf_late", "literal_share", "bridge_share", "cosine_gap",
            "late_gap", "action", "action_related", "contradicts", "agrees", "slot_recall", "slot_fit", "slot_missing")
_AT = {name: column for column, name in enumerate(FEATURES)}
# The four rankings, in ToolIndex.features' order, and the feature each one's rank and score give.
_RANK_FEATURES = ("rrf_literal", "rrf_bridge", "rrf_dense", "rrf_late")
_SCORE_FEATURES = ("literal_share", "bridge_share", "cosine_gap", "late_gap")
# Kinds nearly every tool takes: not counted in "fit" nor in how many kinds a tool claims.
_WEAK_KINDS = frozenset({"number", "text"})


def ranking_weights() -> tuple[float, ...]:
    """The weight of each feature in FEATURES' order: reciprocal rank fusion of the four rankings
    plus bonuses, set by hand on the task sets (bench/RESULTS.md). Weights fitted to the features
    (listwise logistic regression, bench/portal_fit.py) scored lower in leave-one-split-out
    cross-validation, so the other features are there for that bench, weighted 0."""
    weights = {"rrf_literal": 1.0, "rrf_bridge": BRIDGE_RANK_WEIGHT, "rrf_dense": DENSE_RANK_WEIGHT,
               "rrf_late": LATE_RANK_WEIGHT, "action": ACTION_BONUS, "action_related": ACTION_BONUS,
               "contradicts": -INTENT_PENALTY, "slot_recall": SLOT_BONUS, "slot_missing": -MISSING_PENALTY}
    return tuple(weights.get(name, 0.0) for name in FEATURES)


def _effect(annotations: object) -> str:
    def hint(snake: str, camel: str) -> object:
        if isinstance(annotations, dict):
            return annotations.get(camel, annotations.get(snake))
        return getattr(annotations, snake, getattr(annotations, camel, None))

    read_only, destructive = hint("read_only_hint", "readOnlyHint"), hint("destructive_hint", "destructiveHint")
    if read_only is True:
        return "read"
    if read_only is False:
        return "remove" if destructive is True else "change" if destructive is False else "write"
    return ""


_LEAD_IN = re.compile(r"^(?:(?:please|pls|hey|ok|okay|now|then|also|quickly|just|first|go ahead and|can you|could you|would you|will you|"
                      r"i want to|i'd like to|i need to|i wanna|let's|lets|let me|help me|try to|we need to|you should)[\s,]+)+", re.IGNORECASE)
_FIRST_WORD = re.compile(r"[A-Za-z']+")


_CLAUSE = re.compile(r"[.!?;:,\u2014]+\s+|\s+[-\u2013]\s+")
# Requests that open with context ("oops, ...", "Hi! I am new here. Could you...") say what they want
# in a later clause; the first 3 clauses are read (3 and 8 measured alike; 1 lost 2 points on fresh6).
INTENT_CLAUSES = 3


def intent(query: str) -> str:
    """What the request asks to do, from the first word of its first clause that starts with a
    known one ("hi, I'm new here. could you show me..." reads): "read", "change", "remove" or "" (unknown)."""
    for clause in _CLAUSE.split(query.strip()[:300])[:INTENT_CLAUSES]:
        found = _FIRST_WORD.search(_LEAD_IN.sub("", clause.strip()))
        if not found:
            continue
        word = found.group(0).lower()
        for effect, vocabulary in _INTENT_WORDS.items():
            if word in vocabulary:
                return effect
    return ""


_INTENT_WORDS = {
    "read": frozenset("what what's whats which who who's when where why how is are was were does do did has have had can any "
                      "show list get read find search look see view display print check tell give fetch lookup browse inspect "
                      "describe summarise summarize compare count open download load recall retrieve query preview peek grab "
                      "diff explain report whats".split()),
    "remove": frozenset("delete remove erase drop forget clear discard unstage reset wipe purge undo revert "
                        "trash nuke destroy prune unlink".split()),
    "change": frozenset("create make add new write save set update change edit rename move commit stage push merge record "
                        "remember store link connect assign close fix modify insert append replace switch checkout mark put "
                        "attach tag post submit note start begin spin init initialise initialize overwrite apply patch "
                        "branch copy relate track keep".split()),
}
# A request that reads should not start with a tool that changes things, one that changes with a
# tool that only reads, nor one that removes with a tool known not to: a tool whose annotations
# contradict the request's first word loses about two ranks near the top (0.1 to 0.3 measured
# alike on dev + dev2, bench/RESULTS.md). Tools without annotations are not moved.
INTENT_PENALTY = 0.2
# A tool that takes what the request supplies (slots.py: a URL, a file, a time and a zone...):
# up to about two ranks (0.2 to 0.4 measured alike over the eight scored task sets, 0.5 lost).
SLOT_BONUS = 0.3
NEGATIONS = True
# A tool that requires a telling kind (slots.TELLING_KINDS) the request does not give, when it
# gives another ("what time is it in Tokyo": a zone, no clock time, so not convert_time): 0.1
# (0.15 and more lost hit@3 once names and numbers counted, 0.07 gained less).
MISSING_PENALTY = 0.1
SPECIFIC_KINDS = 4
_CONTRADICTS = {"read": {"change", "remove", "write"}, "change": {"read"}, "remove": {"read", "change"}}


def tool_docs(listing: Iterable[tuple[str, str, object]], server_descriptions: Mapping[str, str] | None = None,
              separator: str = "__") -> list[ToolDoc]:
    """ToolDocs from `(server, server description, mcp Tool)` triples."""
    found = []
    for server, server_description, tool in listing:
        schema = getattr(tool, "input_schema", None) or {}
        properties = schema.get("properties") if isinstance(schema, dict) else None
        params, names = [], []
        if isinstance(properties, dict):
            for pname, sub in list(properties.items())[:64]:
                params.append(str(pname))
                names.append(" ".join(words(str(pname)[:100])))
                if isinstance(sub, dict) and isinstance(sub.get("description"), str):
                    params.append(sub["description"][:300])
        title = getattr(tool, "title", None) or ""
        description = f"{title} {getattr(tool, 'description', None) or ''}"
        sentence = (f"{server} ({' '.join(str(server_description or '').split())}) {' '.join(words(str(tool.name)[:200]))}: "
                    f"{' '.join(description[:MAX_FIELD_CHARS].split())} ({', '.join(names)})")
        # A lone surrogate would make the tokenizer refuse the whole listing's batch: replaced.
        sentence = sentence.encode("utf-8", "replace").decode("utf-8")
        accepts, requires = _slots.schema_kinds(schema)
        found.append(ToolDoc(key=f"{server}{separator}{tool.name}", name=tool.name, description=description,
                             params=" ".join(params), server=f"{server} {server_description}", sentence=sentence,
                             effect=_effect(getattr(tool, "annotations", None)), accepts=accepts, requires=requires))
    return found


MAX_OVERVIEW_LINE = 1500
MAX_OVERVIEW_CHARS = 12000
MAX_CACHED_INDEXES = 16
# Terms over all cached indexes: a real listing has a few thousand; a hostile one up to ~100,000.
MAX_CACHED_TERMS = 300_000

Listing = Sequence[tuple[str, str, object]]  # (server, server description, mcp Tool)


class ToolSearch:
    """Ranks a caller's tool listing. Indexes are kept by the listing's content, so callers with
    the same permissions share one and a periodic re-listing that changed nothing reuses it.

    With `semantic` (the default) the embedding model loads in the background from construction
    on, and a new listing's tools are embedded by one background worker (each text once, kept, so
    a re-listing that changed one tool embeds one tool). The first search of a listing waits up to
    `wait_seconds` for them; a later search uses them if they are ready and ranks lexically if not,
    so no search waits twice. Each search embeds its query (about 6 ms of CPU). Without the
    model: lexical only. Thread-safe: the portal searches in a worker thread.
    """

    def __init__(self, separator: str = "__", *, semantic: bool = True,
                 wait_seconds: float | None = SEMANTIC_WAIT_SECONDS) -> None:
        self.separator = separator
        lexicon()  # read now (0.3 s, once per process), not during the first search
        self.semantic = semantic
        self.wait_seconds = wait_seconds
        if semantic:
            _semantic.warm_up()
        self._indexes: dict[tuple[ToolDoc, ...], ToolIndex] = {}
        self._last: tuple[tuple, Listing, ToolIndex] | None = None
        self._lock = threading.RLock()

    def index(self, listing: Listing) -> ToolIndex:
        """The listing's index, built now; its tools' embeddings start in the background."""
        same = tuple((server, description, id(tool)) for server, description, tool in listing)
        with self._lock:
            # Fast path: the very same Tool objects as last time (upstreams cache their listings).
            if self._last is not None and self._last[0] == same:
                return self._last[2]
        key = tuple(tool_docs(listing, separator=self.separator))
        with self._lock:
            index = self._indexes.pop(key, None)
        if index is None:
            # Built outside the lock: a large new listing (a second or so at the size caps) does
            # not hold up other callers' searches of listings already indexed.
            index = ToolIndex(key)
            if self.semantic:
                index.vectors = _semantic.embed_later([doc.sentence for doc in key])
        with self._lock:
            self._indexes.pop(key, None)  # another thread may have built it meanwhile
            # Bounded by count and by total vocabulary (a hostile listing's index is large).
            while self._indexes and (len(self._indexes) >= MAX_CACHED_INDEXES or
                                     sum(len(i.postings) for i in self._indexes.values()) + len(index.postings) > MAX_CACHED_TERMS):
                self._indexes.pop(next(iter(self._indexes)))
            self._indexes[key] = index  # most recently used last
            # The listing is kept with its ids so they stay those of live objects.
            self._last = (same, listing, index)
            return index

    def prepare(self, listing: Listing) -> None:
        """Start indexing a listing before anyone searches it (the portal calls this when it lists)."""
        self.index(listing)

    def search(self, listing: Listing, query: str, limit: int) -> list[str]:
        index = self.index(listing)
        query = query[:MAX_QUERY_CHARS]
        scores = None
        if index.vectors is not None:
            waited, index.waited = index.waited, True
            vectors = _semantic.result(index.vectors, 0.0 if waited else self.wait_seconds)
            if vectors is not None:
                scores = _semantic.similarity(vectors, query, DENSE_DEPTH if LATE_RANK_WEIGHT else 0)
        return index.search(query, limit, *(scores or ()))


def is_browse(query: str) -> bool:
    """An empty or `*` query asks for the overview instead of a ranking."""
    return query.strip() in ("", "*")


def overview(listing: Listing) -> str:
    """One line per server: `server: description. Tools: a, b, c`, bounded in size."""
    servers: dict[str, tuple[str, list[str]]] = {}
    for server, description, tool in listing:
        servers.setdefault(server, (" ".join(description.split()), []))[1].append(str(getattr(tool, "name", "")))
    lines = []
    for server, (description, names) in servers.items():
        head = f"{server}: {description.rstrip('.')}. Tools: " if description else f"{server}: tools: "
        line = head + ", ".join(names)
        if len(line) > MAX_OVERVIEW_LINE:
            shown = []
            for name in names:
                if len(head) + len(", ".join([*shown, name])) > MAX_OVERVIEW_LINE - 20:
                    break
                shown.append(name)
            line = head + ", ".join(shown) + f", … (+{len(names) - len(shown)} more; search by words to see them)"
        lines.append(line)
    text = "\n".join(lines) if lines else "No tools are available."
    if len(text) > MAX_OVERVIEW_CHARS:
        text = text[:MAX_OVERVIEW_CHARS].rsplit("\n", 1)[0] + "\n… (more servers; search by words)"
    return text
