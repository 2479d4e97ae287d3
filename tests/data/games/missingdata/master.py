"""missingdata: a test game whose module fails at import with NLTK's many-line "Resource not found" banner.

clembench's taboo calls ``nltk.download('stopwords')`` and ``stopwords.words('english')`` at import;
offline, NLTK raises this LookupError (its text is copied in the shape NLTK 3.9 prints it).
"""
BANNER = "*" * 70
raise LookupError(f"""
{BANNER}
  Resource \x1b[93mstopwords\x1b[0m not found.
  Please use the NLTK Downloader to obtain the resource:

  \x1b[31m>>> import nltk
  >>> nltk.download('stopwords')
  \x1b[0m
  For more information see: https://www.nltk.org/data.html

  Attempted to load \x1b[93mcorpora/stopwords\x1b[0m

  Searched in:
    - '/root/nltk_data'
    - '/usr/share/nltk_data'
{BANNER}
""")
