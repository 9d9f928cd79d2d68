"""Index a corpus with a retrieval framework pointed at the service, as its user would,
then retrieve: run by tests/frameworks/test_retrieval_frameworks.py with
.venv-frameworks' python (the frameworks are not in the service's venv).

Usage: index_corpus.py {langchain|llamaindex} BASE_URL KEY CORPUS_JSON QUERY_INDEX
Prints one JSON line: chunks indexed, seconds, the vector size, the texts the query
retrieved (best first) and the first chunk's vector.
"""

import json
import sys
import time


def langchain(base_url: str, key: str, chunks: list[str], query: str):
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import OpenAIEmbeddings

    # Defaults kept (chunk_size 1,000 texts per request); the service reads text, not tiktoken's token ids.
    embeddings = OpenAIEmbeddings(model="english", base_url=base_url + "/v1", api_key=key,
                                  check_embedding_ctx_length=False)
    started = time.perf_counter()
    store = InMemoryVectorStore.from_texts(chunks, embeddings)
    seconds = time.perf_counter() - started
    found = [document.page_content for document in store.similarity_search(query, k=3)]
    return seconds, found, embeddings.embed_documents(chunks[:1])[0]


def llamaindex(base_url: str, key: str, chunks: list[str], query: str):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.openai import OpenAIEmbedding

    # Defaults kept (embed_batch_size 100); model_name: any model the server knows.
    embeddings = OpenAIEmbedding(model_name="english", api_base=base_url + "/v1", api_key=key)
    started = time.perf_counter()
    index = VectorStoreIndex([TextNode(text=chunk) for chunk in chunks], embed_model=embeddings)
    seconds = time.perf_counter() - started
    found = [hit.node.get_content() for hit in index.as_retriever(similarity_top_k=3).retrieve(query)]
    return seconds, found, embeddings.get_text_embedding(chunks[0])


def main():
    framework, base_url, key, corpus_path, query_index = sys.argv[1:]
    with open(corpus_path) as corpus:
        chunks = json.load(corpus)
    run = {"langchain": langchain, "llamaindex": llamaindex}[framework]
    seconds, found, first_vector = run(base_url, key, chunks, chunks[int(query_index)])
    print(json.dumps({"chunks": len(chunks), "seconds": round(seconds, 2), "dimensions": len(first_vector),
                      "found": found, "first_vector": first_vector}))


if __name__ == "__main__":
    main()
