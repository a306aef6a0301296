"""Model steps: LLM, structured output, classify, embed, similar."""
