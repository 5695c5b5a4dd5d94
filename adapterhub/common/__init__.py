"""What the hub client and the hub server (and the programs on top) share: the wire's names and patterns
(:mod:`.wire`), file hashes (:mod:`.hashing`), atomic writes (:mod:`.files`), where a model card's front matter
is (:mod:`.cards`) and sizes as people read them (:mod:`.sizes`).

Standard library only, and no other part of adapterhub: every layer may import it.
"""
