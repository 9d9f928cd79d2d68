"""A retriever with a reranker pointed at the service, as its user would write it: the
vector store's nearest chunks (through /v1/embeddings), reranked through /v1/rerank by
LangChain-community's JinaRerank or LlamaIndex's JinaRerank postprocessor. Run by
tests/frameworks/test_rerank_framework.py with .venv-frameworks' python.

Usage: rerank_candidates.py {langchain|llamaindex} BASE_URL KEY CORPUS_JSON QUERY CANDIDATES TOP_N
Prints one JSON line: the candidates the store found (nearest first) and the
reranked documents with their relevance scores (best first).
"""

import json
import sys


def langchain(base_url: str, key: str, chunks: list[str], query: str, candidates: int, top_n: int):
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_community.document_compressors import JinaRerank, jina_rerank
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import OpenAIEmbeddings

    # JinaRerank posts to this module-level URL: the service's, not Jina's.
    jina_rerank.JINA_API_URL = base_url + "/v1/rerank"
    embeddings = OpenAIEmbeddings(model="english", base_url=base_url + "/v1", api_key=key,
                                  check_embedding_ctx_length=False)
    store = InMemoryVectorStore.from_texts(chunks, embeddings)
    nearest = store.as_retriever(search_kwargs={"k": candidates})
    retriever = ContextualCompressionRetriever(
        base_retriever=nearest, base_compressor=JinaRerank(model="english", jina_api_key=key, top_n=top_n))
    reranked = [(document.page_content, document.metadata["relevance_score"]) for document in retriever.invoke(query)]
    return [document.page_content for document in nearest.invoke(query)], reranked


def llamaindex(base_url: str, key: str, chunks: list[str], query: str, candidates: int, top_n: int):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    embeddings = OpenAIEmbedding(model_name="english", api_base=base_url + "/v1", api_key=key)
    index = VectorStoreIndex([TextNode(text=chunk) for chunk in chunks], embed_model=embeddings)
    nearest = index.as_retriever(similarity_top_k=candidates).retrieve(query)
    reranker = JinaRerank(model="english", base_url=base_url + "/v1", api_key=key, top_n=top_n)
    reranked = [(hit.node.get_content(), hit.score) for hit in reranker.postprocess_nodes(nearest, query_str=query)]
    return [hit.node.get_content() for hit in nearest], reranked


def main():
    framework, base_url, key, corpus_path, query, candidates, top_n = sys.argv[1:]
    with open(corpus_path) as corpus:
        chunks = json.load(corpus)
    run = {"langchain": langchain, "llamaindex": llamaindex}[framework]
    found, reranked = run(base_url, key, chunks, query, int(candidates), int(top_n))
    print(json.dumps({"candidates": found,
                      "reranked": [{"text": text, "relevance_score": score} for text, score in reranked]}))


if __name__ == "__main__":
    main()
