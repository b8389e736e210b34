"""A task's data and how it is scored: rows read, checked and tokenised (``data``, ``chat_records``,
``text_blocks``), a decoder's answers read from its responses (``answer_reading``, ``answer_options``), and a
user's own metrics (``user_metrics``)."""
