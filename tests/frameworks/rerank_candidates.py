"""A LangChain retriever with a reranker pointed at the service, as its user would write
it: the vector store's nearest chunks (through /v1/embeddings), reranked by
LangChain-community's JinaRerank (through /v1/rerank). Run by
tests/frameworks/test_rerank_framework.py with .venv-frameworks' python.

Usage: rerank_candidates.py BASE_URL KEY CORPUS_JSON QUERY CANDIDATES TOP_N
Prints one JSON line: the candidates the store found (nearest first) and the
reranked documents with their relevance scores (best first).
"""

import json
import sys


def main():
    base_url, key, corpus_path, query, candidates, top_n = sys.argv[1:]
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_community.document_compressors import JinaRerank, jina_rerank
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import OpenAIEmbeddings

    with open(corpus_path) as corpus:
        chunks = json.load(corpus)
    # JinaRerank posts to this module-level URL: the service's, not Jina's.
    jina_rerank.JINA_API_URL = base_url + "/v1/rerank"
    embeddings = OpenAIEmbeddings(model="english", base_url=base_url + "/v1", api_key=key,
                                  check_embedding_ctx_length=False)
    store = InMemoryVectorStore.from_texts(chunks, embeddings)
    nearest = store.as_retriever(search_kwargs={"k": int(candidates)})
    retriever = ContextualCompressionRetriever(
        base_retriever=nearest, base_compressor=JinaRerank(model="english", jina_api_key=key, top_n=int(top_n)))
    reranked = retriever.invoke(query)
    print(json.dumps({
        "candidates": [document.page_content for document in nearest.invoke(query)],
        "reranked": [{"text": document.page_content, "relevance_score": document.metadata["relevance_score"]}
                     for document in reranked],
    }))


if __name__ == "__main__":
    main()
