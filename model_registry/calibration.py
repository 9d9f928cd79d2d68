"""Sentences an ONNX export is checked on: fp32 against torch, int8 against fp32.

Fixed, so a gate's verdict is reproducible. Chosen to be hard on a quantised
model rather than typical: single words and punctuation (a short input's vector
rests on few tokens, and int8 error shows there first), numbers, code, URLs,
emoji, other languages and scripts, and a few long paragraphs.
"""

SENTENCES = (
    'The quick brown fox jumps over the lazy dog.',
    'iPhone 12 128GB',
    'RTX 3090',
    'The meaning of life is 42.',
    'How do I reset my password if I no longer have access to my email?',
    'Ein mehrsprachiger Satz über das Wetter in Berlin.',
    'Le chat est assis sur le tapis.',
    '¿Dónde está la biblioteca?',
    '東京は日本の首都です。',
    'def add(a, b): return a + b',
    'SELECT name, price FROM products WHERE price > 100 ORDER BY price DESC;',
    'Error 503: the service is temporarily unavailable, please retry later.',
    '5 stars, would buy again!!!',
    'Terrible customer service. I waited three hours and nobody answered.',
    'The mitochondria is the powerhouse of the cell.',
    'Quarterly revenue rose 12% year over year, driven by cloud subscriptions.',
    'Patient presents with acute chest pain radiating to the left arm.',
    'The court held that the contract was void for lack of consideration.',
    'Mix the flour and butter, then add two eggs and a pinch of salt.',
    'Breaking: heavy rain expected across the north-east tonight.',
    'hello',
    'ok',
    '?',
    'Thanks!',
    "lol that's so funny 😂😂",
    'https://example.com/path?query=1&other=two',
    'user@example.com',
    '+1 (555) 123-4567',
    '2024-03-15T10:30:00Z',
    '3.14159265358979323846',
    'The Eiffel Tower is in Paris, and the Colosseum is in Rome.',
    'Neural networks learn representations from data by gradient descent.',
    'She sells sea shells by the sea shore.',
    'To be, or not to be, that is the question.',
    'A man is playing a guitar on stage in front of a large crowd.',
    'Two dogs are running through a field of tall grass.',
    'The stock market crashed after the announcement of new tariffs.',
    "Please find attached the invoice for last month's consulting work.",
    'What is the capital of Australia?',
    'Canberra is the capital city of Australia.',
    'I love this phone, but the battery life could be better.',
    'The train to Edinburgh departs from platform nine at quarter past six.',
    'Photosynthesis converts light energy into chemical energy stored in glucose.',
    'Our new laptop features a 14-inch display, 16 GB of memory and a 1 TB SSD.',
    'Can you recommend a good Italian restaurant near the station?',
    'The meeting has been moved to Thursday afternoon because of the holiday.',
    'Water boils at one hundred degrees Celsius at sea level.',
    'He scored twice in the second half to win the championship for his team.',
    'Install the package with pip and import it in your script.',
    'The defendant pleaded not guilty to all charges.',
    ('Climate change is increasing the frequency of extreme weather events across the globe, '
     'from heatwaves and droughts to floods and wildfires, and scientists warn that without '
     'rapid cuts in emissions these trends will accelerate over the coming decades, putting food'
     ' supplies, infrastructure and public health under growing strain.'),
    ('In the beginning of the project, the team spent several weeks gathering requirements from '
     'users, interviewing stakeholders across three departments, mapping the existing processes '
     'in detail, and prototyping a number of alternative designs before finally agreeing on an '
     'architecture that balanced cost, performance, maintainability and the need to integrate '
     'with the legacy billing system.'),
    ('The novel follows a young woman who leaves her village to work in the city, where she '
     'meets a cast of eccentric characters, falls in and out of love, loses her job, starts a '
     'small bakery with a friend, and slowly discovers that the life she imagined as a child is '
     'neither as simple nor as distant as she once believed.'),
    ('Researchers trained a large language model on a mixture of web pages, books, scientific '
     'articles and source code, then fine-tuned it with human feedback so that it follows '
     'instructions, refuses harmful requests and explains its reasoning, and they report that it'
     ' outperforms previous systems on a broad range of benchmarks while using less compute at '
     'inference time.'),
    'the the the the the the the the the the the the the the the the the the the the',
    'a b c d e f g h i j k l m n o p q r s t u v w x y z',
    '1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20',
    'ALL CAPS SENTENCE WITH SHOUTING AND NO PUNCTUATION',
    "Ceci n'est pas une pipe.",
    'Я люблю машинное обучение.',
    'Dit is een Nederlandse zin over fietsen.',
    'Questo è un esempio di frase italiana.',
    'Kubernetes schedules containers onto nodes according to resource requests.',
    'The recipe calls for three cups of sugar, which seems like far too much.',
)
